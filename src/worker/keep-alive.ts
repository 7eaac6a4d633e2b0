// Keeps the entries this worker holds from looking orphaned to the other workers: a slow batch,
// or outcomes waiting for Redis to take writes again, would otherwise pass CLAIM_IDLE_MS and be
// claimed and sent a second time. Touching (touchPending-1.lua) needs no memory in Redis, so it
// goes on while Redis refuses writes for want of memory; when Redis refuses it too (read-only,
// loading, unreachable) there is nothing to do but try again next time.
import type { Logger } from '../core/logger.ts';
import type { InHand } from './in-hand.ts';
import type { StreamOps } from './stream-ops.ts';

export interface KeepAliveOptions {
  streams: readonly StreamOps[];
  inHand: InHand;
  /** A third of CLAIM_IDLE_MS: two touches can fail before another worker may claim. */
  intervalMs: number;
  logger: Logger;
}

export function startKeepAlive(o: KeepAliveOptions): { stop(): void } {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    const touches = o.streams.map(async (ops) => {
      const ids = o.inHand.ids(ops.account);
      if (ids.length > 0) await ops.touchPending(ids);
    });
    void Promise.allSettled(touches).then((results) => {
      running = false;
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) o.logger.debug({ err: failed.reason }, 'held entries not touched; trying again');
    });
  }, o.intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
