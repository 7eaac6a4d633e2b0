// Records settlements in Redis, and keeps every one it was given until Redis has it. A settle
// Redis refuses (out of memory, read-only replica, loading, no connection) is not an error to log
// and drop: the outcome is kept in the process and sent again with capped backoff, while the
// worker reads and delivers nothing new (`blocked`). Dropping it would leave the entry pending;
// CLAIM_IDLE_MS later another worker would claim it and the sink would get it twice.
import { Backoff, sleep } from '../core/backoff.ts';
import { errorKind, type ErrorKind } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import { settlementSize, type Settlement } from './settlement-batch.ts';
import type { StreamOps } from './stream-ops.ts';

export interface SettleResult { deadLetterIds: Array<string | null> }

interface Waiting { ops: StreamOps; settlement: Settlement; size: number }

export interface SettlerOptions {
  metrics: Metrics;
  logger: Logger;
  /** Backoff between tries of a refused settle. */
  backoff?: { baseMs: number; maxMs: number };
}

export class Settler {
  private readonly o: SettlerOptions;
  /** Settlements sent and not yet recorded. */
  private readonly inFlight = new Set<Waiting>();
  /** Those of them Redis refused at least once. */
  private readonly refused = new Set<Waiting>();
  private refusedKind: ErrorKind | undefined;
  private episodeStartedAt = 0;
  private unsettledEntries = 0;
  private idleWaiters: Array<() => void> = [];
  private unblockWaiters: Array<() => void> = [];
  /** Rises on every refusal: a dedupe check read while it rose may have missed markers. */
  refusals = 0;
  /** Aborted to stop re-sending (the shutdown timeout ran out). */
  private readonly abandon = new AbortController();

  constructor(options: SettlerOptions) {
    this.o = options;
  }

  /** True while Redis refuses to record an outcome this worker holds. */
  get blocked(): boolean { return this.refused.size > 0; }

  /** Why, for /ready and /status. */
  get blockedReason(): string | undefined {
    if (!this.blocked) return undefined;
    return `redis refuses writes (${this.refusedKind ?? 'unknown'}): ${this.unsettledEntries} outcomes wait to be recorded; reading paused`;
  }

  get unsettled(): number { return this.unsettledEntries; }

  /**
   * Sends the settlement at once (auto-pipelined behind earlier commands) and resolves when Redis
   * has recorded it, however long that takes. Rejects only when abandoned at the shutdown timeout.
   */
  submit(ops: StreamOps, settlement: Settlement): Promise<SettleResult> {
    const waiting: Waiting = { ops, settlement, size: settlementSize(settlement) };
    this.inFlight.add(waiting);
    this.unsettledEntries += waiting.size;
    this.o.metrics.unsettledOutcomes.set(this.unsettledEntries);
    return this.send(waiting).finally(() => {
      this.inFlight.delete(waiting);
      this.unsettledEntries -= waiting.size;
      this.o.metrics.unsettledOutcomes.set(this.unsettledEntries);
      if (this.refused.delete(waiting) && this.refused.size === 0) this.endEpisode();
      if (this.inFlight.size === 0) this.wake('idle');
    });
  }

  /** Resolves when nothing is refused any more (at once when nothing is). */
  async unblocked(signal?: AbortSignal): Promise<void> {
    while (this.blocked && !signal?.aborted) {
      await new Promise<void>((resolve) => {
        // The listener goes with the wait: every lane waits on the same stop signal, once per episode.
        const done = () => {
          signal?.removeEventListener('abort', done);
          resolve();
        };
        this.unblockWaiters.push(done);
        signal?.addEventListener('abort', done, { once: true });
      });
    }
  }

  /** Resolves when every settlement sent so far is recorded. */
  async idle(): Promise<void> {
    while (this.inFlight.size > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /** Waits up to `timeoutMs` for every held outcome to be recorded; returns how many were not. */
  async drain(timeoutMs: number): Promise<number> {
    const timeUp = new AbortController();
    await Promise.race([this.idle(), sleep(timeoutMs, timeUp.signal)]);
    timeUp.abort();
    const left = this.unsettledEntries;
    if (left > 0) {
      this.abandon.abort();
      await this.idle();
    }
    return left;
  }

  private async send(waiting: Waiting): Promise<SettleResult> {
    const backoff = new Backoff({ baseMs: this.o.backoff?.baseMs ?? 100, maxMs: this.o.backoff?.maxMs ?? 5_000 });
    for (;;) {
      try {
        return await waiting.ops.settle(waiting.settlement);
      } catch (err) {
        if (this.abandon.signal.aborted) throw err;
        const kind = errorKind(err);
        this.refusals += 1;
        this.o.metrics.settleRefusals.inc({ kind });
        if (!this.blocked) this.startEpisode(kind, err);
        this.refused.add(waiting);
        this.refusedKind = kind;
        await sleep(backoff.next(), this.abandon.signal);
        if (this.abandon.signal.aborted) throw err;
      }
    }
  }

  /** One warning per episode, not one per batch: the episode ends when Redis took everything. */
  private startEpisode(kind: ErrorKind, err: unknown): void {
    this.episodeStartedAt = Date.now();
    this.o.metrics.settleBlocked.set(1);
    this.o.logger.warn({ err, kind, unsettled: this.unsettledEntries }, 'redis refuses to record delivery outcomes: holding them and reading nothing new until it takes them');
  }

  private endEpisode(): void {
    this.o.metrics.settleBlocked.set(0);
    this.o.logger.info({ kind: this.refusedKind, blockedMs: Date.now() - this.episodeStartedAt }, 'redis records delivery outcomes again: reading resumes');
    this.refusedKind = undefined;
    this.wake('unblock');
  }

  private wake(which: 'idle' | 'unblock'): void {
    const waiters = which === 'idle' ? this.idleWaiters : this.unblockWaiters;
    if (which === 'idle') this.idleWaiters = []; else this.unblockWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
