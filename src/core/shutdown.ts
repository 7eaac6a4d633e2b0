// Graceful stop: the first SIGTERM/SIGINT asks the daemon to finish what it holds; a second one
// (or the timeout) exits at once. Cleanup steps run in reverse order of registration, each once,
// all of them even when one fails, so calling `shutdown()` twice is harmless.
import type { Logger } from './logger.ts';
import { flushLogger } from './logger.ts';

type Step = { name: string; run: () => Promise<void> | void };

export class Shutdown {
  private readonly steps: Step[] = [];
  private running: Promise<void> | undefined;
  private readonly controller = new AbortController();
  private readonly logger: Logger;
  private readonly timeoutMs: number;

  constructor(logger: Logger, timeoutMs: number) {
    this.logger = logger;
    this.timeoutMs = timeoutMs;
  }

  /** Aborted when shutdown begins: long waits (BLOCK reads, sleeps, IDLE) listen to it. */
  get signal(): AbortSignal { return this.controller.signal; }

  get stopping(): boolean { return this.controller.signal.aborted; }

  /** Registers a cleanup step; later steps run first. */
  add(name: string, run: () => Promise<void> | void): void {
    this.steps.push({ name, run });
  }

  shutdown(reason: string): Promise<void> {
    if (this.running) return this.running;
    this.logger.info({ reason }, 'shutting down');
    this.controller.abort(new Error(reason));
    this.running = (async () => {
      for (const step of [...this.steps].reverse()) {
        try {
          await step.run();
        } catch (err) {
          this.logger.error({ err, step: step.name }, 'cleanup step failed');
        }
      }
    })();
    return this.running;
  }

  /** Wires SIGTERM/SIGINT: first graceful (exit 0 when done), second forceful (exit 1). */
  installSignalHandlers(exit: (code: number) => void = (code) => process.exit(code)): void {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals += 1;
      if (signals > 1) {
        this.logger.warn({ signal }, 'second signal: exiting now');
        flushLogger(this.logger);
        exit(1);
        return;
      }
      const timer = setTimeout(() => {
        this.logger.warn({ timeoutMs: this.timeoutMs }, 'graceful shutdown timed out: exiting');
        flushLogger(this.logger);
        exit(1);
      }, this.timeoutMs);
      timer.unref();
      void this.shutdown(signal).then(() => {
        clearTimeout(timer);
        this.logger.info('stopped');
        flushLogger(this.logger);
        exit(0);
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  }
}
