// The one scheduler of a worker's account turns, whatever the number of accounts: a few lanes
// (WORKER_CONCURRENCY) take accounts from the ready queue one turn at a time. An account gets in
// line from a signal, a full batch before, a retry falling due (one timer for all accounts), the
// orphan claim every CLAIM_INTERVAL_MS, and the sweep of every account every WORKER_SWEEP_MS that
// catches whatever a lost signal or another worker's retry schedule did not announce. One turn per
// account at a time, so an account's batches still go one after another (dedupe relies on it).
// While the sink's breaker is open, or Redis refuses to record outcomes this worker holds, no turn
// starts; half-open, a turn starts only when none is under way: a held batch makes the breaker's
// trial call, or one turn reads one batch for it; nothing more is read until the sink answered.
import { Backoff, sleep } from '../core/backoff.ts';
import { redisErrorKind } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { AccountTurn } from './account-turn.ts';
import type { SinkBreaker } from './deliver.ts';
import { ReadyQueue, WORK, type Turn, type Work } from './ready-queue.ts';
import type { Settler } from './settler.ts';

export interface TurnSchedulerOptions {
  turns: ReadonlyMap<string, AccountTurn>;
  breaker: SinkBreaker;
  settler: Settler;
  /** Turns under way at once (different accounts). */
  lanes: number;
  sweepMs: number;
  claimIntervalMs: number;
  breakerPollMs: number;
  logger: Logger;
  stopping: AbortSignal;
}

/** setTimeout's longest delay; a later retry is found by a sweep before then anyway. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Due retries are collected at most this often: each collection looks at every account with one. */
const RETRY_TICK_MS = 50;
/** Failed turns are logged at warn at most this often (Redis refusing reads fails every account). */
const WARN_EVERY_MS = 1_000;

export class TurnScheduler {
  private readonly o: TurnSchedulerOptions;
  private readonly queue = new ReadyQueue();
  /** Per account: when its earliest known retry falls due. */
  private readonly retryDue = new Map<string, number>();
  private retryTimer: NodeJS.Timeout | undefined;
  private retryTimerAt = Infinity;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly failures = new Map<string, Backoff>();
  private readonly failureTimers = new Set<NodeJS.Timeout>();
  private lastWarnAt = 0;
  private idleLanes: Array<() => void> = [];

  constructor(options: TurnSchedulerOptions) {
    this.o = options;
  }

  /** Runs the lanes until `stopping` aborts; resolves when every turn under way has ended. */
  run(): Promise<void> {
    const { stopping, sweepMs, claimIntervalMs } = this.o;
    this.timers.push(setInterval(() => this.everyAccount(WORK.read | WORK.retries), sweepMs));
    this.timers.push(setInterval(() => this.everyAccount(WORK.claim), claimIntervalMs));
    for (const timer of this.timers) timer.unref();
    stopping.addEventListener('abort', () => this.halt(), { once: true });
    const lanes = Array.from({ length: Math.max(1, this.o.lanes) }, () => this.lane());
    return Promise.all(lanes).then(() => undefined);
  }

  /**
   * Every account, everything: the first turn of each re-reads its own pending entries. Called when
   * the signal read has its position, so nothing appended in between goes unseen till a sweep.
   */
  startUp(): void {
    this.everyAccount(WORK.read | WORK.retries | WORK.claim);
  }

  /** A signal: the account has new entries. */
  signal(account: string): void {
    if (!this.o.turns.has(account)) return;
    this.queue.add(account, WORK.read, true);
    this.wake();
  }

  /** A retry of the account falls due at `at` (scheduled by this worker, or seen waiting). */
  retryAt(account: string, at: number): void {
    const known = this.retryDue.get(account);
    if (known !== undefined && known <= at) return;
    this.retryDue.set(account, at);
    if (at < this.retryTimerAt) this.armRetryTimer(at);
  }

  private everyAccount(work: Work): void {
    for (const account of this.o.turns.keys()) this.queue.add(account, work, false);
    this.wake();
  }

  private async lane(): Promise<void> {
    const { stopping } = this.o;
    while (!stopping.aborted) {
      const hold = this.hold();
      if (hold) { await hold; continue; }
      // From the check above to here nothing awaits: two lanes cannot both start the half-open trial.
      const turn = this.queue.take();
      if (!turn) { await new Promise<void>((resolve) => this.idleLanes.push(resolve)); continue; }
      let more: Work = 0;
      try {
        more = await this.o.turns.get(turn.account)!.run(turn.work);
        this.failures.get(turn.account)?.reset();
      } catch (err) {
        if (!stopping.aborted) this.failed(turn, err);
      } finally {
        this.queue.done(turn.account, more);
        if (more !== 0) this.wake();
      }
    }
  }

  /** What a lane waits for before it may start a turn; undefined: nothing. */
  private hold(): Promise<void> | undefined {
    const { breaker, settler, stopping, breakerPollMs } = this.o;
    if (breaker.opened) return sleep(breakerPollMs, stopping);
    if (settler.blocked) return settler.unblocked(stopping);
    if (breaker.halfOpen && this.queue.running > 0) return sleep(breakerPollMs, stopping);
    return undefined;
  }

  /** The account's turn failed: it goes back in line after its own backoff, the others go on. */
  private failed(turn: Turn, err: unknown): void {
    const { logger } = this.o;
    if (redisErrorKind(err) === 'redis-nogroup') this.o.turns.get(turn.account)!.groupLost();
    let backoff = this.failures.get(turn.account);
    if (!backoff) this.failures.set(turn.account, (backoff = new Backoff({ baseMs: 100, maxMs: 5_000 })));
    const delay = backoff.next();
    const now = Date.now();
    const warn = now - this.lastWarnAt >= WARN_EVERY_MS;
    if (warn) this.lastWarnAt = now;
    logger[warn ? 'warn' : 'debug']({ err, account: turn.account, retryInMs: delay }, 'worker turn failed; retrying');
    const timer = setTimeout(() => {
      this.failureTimers.delete(timer);
      this.queue.add(turn.account, turn.work, true);
      this.wake();
    }, delay);
    this.failureTimers.add(timer);
  }

  private armRetryTimer(at: number): void {
    clearTimeout(this.retryTimer);
    this.retryTimerAt = at;
    this.retryTimer = setTimeout(() => this.retriesDue(), Math.min(MAX_TIMER_MS, Math.max(RETRY_TICK_MS, at - Date.now())));
    this.retryTimer.unref();
  }

  private retriesDue(): void {
    this.retryTimerAt = Infinity;
    const now = Date.now();
    let next = Infinity;
    for (const [account, at] of this.retryDue) {
      if (at <= now) {
        this.retryDue.delete(account);
        this.queue.add(account, WORK.retries, true);
      } else {
        next = Math.min(next, at);
      }
    }
    if (next < Infinity) this.armRetryTimer(next);
    this.wake();
  }

  private wake(): void {
    const lanes = this.idleLanes;
    this.idleLanes = [];
    for (const resolve of lanes) resolve();
  }

  private halt(): void {
    for (const timer of this.timers) clearInterval(timer);
    for (const timer of this.failureTimers) clearTimeout(timer);
    this.failureTimers.clear();
    clearTimeout(this.retryTimer);
    this.wake();
  }
}
