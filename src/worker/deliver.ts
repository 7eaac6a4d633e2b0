// Delivers one batch of entries of one account: skips keys already delivered, sends the rest
// through the sink's circuit breaker, then acknowledges, schedules retries or dead-letters.
// While the breaker is open nothing is sent and nothing is charged: the entries wait.
import { isPermanent } from '../core/errors.ts';
import { sleep } from '../core/backoff.ts';
import type { Breaker } from '../core/breaker.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import { appendedAtMs, type StreamEntry } from './entries.ts';
import type { Limiter } from './limiter.ts';
import { decideAfterFailure, decideOnUnfinished, parseFailureRecord, type FailureDecision, type FailureRecord, type RetrySettings } from './retry-policy.ts';
import type { StreamOps } from './stream-ops.ts';
import type { Delivery, Sink } from './sinks/types.ts';

export type SinkBreaker = Breaker<[Delivery[], AbortSignal], void>;

/** `failedAt`: the retry is timed from the failure itself, not from when the batch finished. */
type Attempt = { kind: 'delivered' } | { kind: 'failed'; err: unknown; failedAt: number } | { kind: 'abandoned' };

/** Codes of errors that mean the sink itself is unreachable, not that this email is at fault. */
const SINK_UNAVAILABLE = /^ERR_(WEBHOOK_(CONNECTION|TIMEOUT|502|503|504)|POSTGRES|JSONL_WRITE)$/;

function failureKind(err: unknown): string {
  if (isPermanent(err)) return 'permanent';
  const code = String((err as { code?: unknown }).code ?? '');
  if (code.endsWith('TIMEOUT')) return 'timeout';
  if (code.endsWith('CONNECTION')) return 'connection';
  if (code === 'ERR_WEBHOOK_429') return 'rate_limited';
  return 'transient';
}

interface Failure { entry: StreamEntry; err: unknown; failedAt: number }

export interface DelivererOptions {
  sink: Sink;
  breaker: SinkBreaker;
  limiter: Limiter;
  metrics: Metrics;
  logger: Logger;
  retry: RetrySettings;
  /** Hand-outs with no outcome before an entry is dead-lettered (MAX_UNFINISHED_DELIVERIES). */
  maxUnfinished: number;
  consumer: string;
  /** Aborted when shutdown begins: no new attempt starts, waiting entries are left pending. */
  stopping: AbortSignal;
  /** Aborted when the shutdown timeout runs out: deliveries under way are given up. */
  giveUp: AbortSignal;
  /** How often a delivery waiting on an open breaker looks again. */
  breakerPollMs: number;
}

export class Deliverer {
  private readonly o: DelivererOptions;
  /** Acknowledgements and failure records under way: they overlap the next read. */
  private readonly settling = new Set<Promise<void>>();
  /** Per account: the earliest retry scheduled since the account's loop last asked. */
  private readonly earliestRetry = new Map<string, number>();
  /** Entry ids this process is delivering right now (a slow one can look like an orphan). */
  private readonly inHand = new Set<string>();
  /** Per-email metric series, resolved once: label lookups would cost on every email. */
  private readonly series;

  constructor(options: DelivererOptions) {
    this.o = options;
    const sink = { sink: options.sink.kind };
    this.series = {
      duration: options.metrics.deliveryDuration.labels(sink),
      endToEnd: options.metrics.endToEndLatency.labels(sink),
    };
  }

  /** `fresh`: read with `>` for the first time, so no failure can be on record yet. */
  async process(ops: StreamOps, entries: StreamEntry[], fresh: boolean): Promise<void> {
    if (entries.length === 0) return;
    for (const e of entries) this.inHand.add(e.id);
    try {
      await this.processInHand(ops, entries, fresh);
    } finally {
      for (const e of entries) this.inHand.delete(e.id);
    }
  }

  isInHand(id: string): boolean { return this.inHand.has(id); }

  private async processInHand(ops: StreamOps, entries: StreamEntry[], fresh: boolean): Promise<void> {
    const { metrics } = this.o;
    const done = await ops.deliveredKeys(entries);
    const duplicates: StreamEntry[] = [];
    const now: StreamEntry[] = [];
    const later: StreamEntry[] = [];
    const inBatch = new Set<string>();
    for (const e of entries) {
      if (done.has(e.key)) duplicates.push(e);
      else if (inBatch.has(e.key)) later.push(e); // same key twice in one batch: wait for the first
      else { inBatch.add(e.key); now.push(e); }
    }
    if (duplicates.length > 0) {
      this.track(ops.ackDelivered(duplicates, !fresh));
      metrics.emailsDeduplicated.inc(duplicates.length);
    }

    const previous = new Map<string, FailureRecord>();
    if (!fresh) {
      const raw = await ops.failureRecords(now.map((e) => e.id));
      raw.forEach((r, i) => { const rec = parseFailureRecord(r); if (rec) previous.set(now[i]!.id, rec); });
    }
    const deliveries: Delivery[] = now.map((e) => ({ ...e, account: ops.keys.account, previousAttempts: previous.get(e.id)?.attempts ?? 0 }));
    // Entries seen before (retries, orphans) go first: their schedule is already running late.
    const results = await this.deliverAll(deliveries, !fresh);

    const delivered: StreamEntry[] = [];
    const failed: Failure[] = [];
    results.forEach((r, i) => {
      const entry = now[i]!;
      if (r.kind === 'delivered') delivered.push(entry);
      else if (r.kind === 'failed') failed.push({ entry, err: r.err, failedAt: r.failedAt });
    });
    // Not awaited: the next read goes out meanwhile. Commands on the command connection run in
    // order, so the next batch's dedupe check already sees these markers.
    this.track(this.acknowledge(ops, delivered, !fresh));
    this.track(this.handleFailures(ops, failed, previous));
    if (later.length > 0 && !this.o.stopping.aborted) await this.processInHand(ops, later, fresh);
  }

  /** Resolves when every acknowledgement and failure record sent so far is done. */
  async settled(): Promise<void> {
    while (this.settling.size > 0) await Promise.all(this.settling);
  }

  /** The earliest retry this worker scheduled since the last call, so the loop wakes for it. */
  takeEarliestRetry(account: string): number | undefined {
    const at = this.earliestRetry.get(account);
    this.earliestRetry.delete(account);
    return at;
  }

  private track(work: Promise<unknown>): void {
    const settled: Promise<void> = work.then(() => undefined, (err: unknown) => {
      // The entries stay pending: a retry or the orphan claimer takes them up again.
      this.o.logger.warn({ err }, 'acknowledgement or failure record not written');
    }).finally(() => this.settling.delete(settled));
    this.settling.add(settled);
  }

  private async deliverAll(deliveries: Delivery[], urgent: boolean): Promise<Attempt[]> {
    if (deliveries.length === 0) return [];
    const { sink, limiter } = this.o;
    const each = () => Promise.all(deliveries.map((d) => limiter.run(() => this.attempt([d]), urgent)));
    if (sink.mode === 'each') return each();
    const whole = await limiter.run(() => this.attempt(deliveries), urgent);
    // One bad email refuses a whole batch write: try them one by one to find it.
    if (whole.kind === 'failed' && isPermanent(whole.err) && deliveries.length > 1) return each();
    return deliveries.map(() => whole);
  }

  private async attempt(items: Delivery[]): Promise<Attempt> {
    const { breaker, metrics, stopping, giveUp, sink } = this.o;
    for (;;) {
      if (stopping.aborted) return { kind: 'abandoned' };
      if (breaker.opened) { await sleep(this.o.breakerPollMs, stopping); continue; }
      const stopTimer = this.series.duration.startTimer();
      metrics.inFlight.inc(items.length);
      try {
        await breaker.fire(items, giveUp);
        stopTimer();
        return { kind: 'delivered' };
      } catch (err) {
        if ((err as { code?: unknown }).code === 'EOPENBREAKER') { await sleep(this.o.breakerPollMs, stopping); continue; }
        if (giveUp.aborted) return { kind: 'abandoned' };
        metrics.deliveryFailures.inc({ sink: sink.kind, kind: failureKind(err) }, items.length);
        // The sink is down, not the email at fault: keep it until the breaker lets calls through.
        if (breaker.opened && SINK_UNAVAILABLE.test(String((err as { code?: unknown }).code ?? ''))) continue;
        return { kind: 'failed', err, failedAt: Date.now() };
      } finally {
        metrics.inFlight.dec(items.length);
      }
    }
  }

  private async acknowledge(ops: StreamOps, delivered: StreamEntry[], retried: boolean): Promise<void> {
    if (delivered.length === 0) return;
    await ops.ackDelivered(delivered, retried);
    const { metrics, sink } = this.o;
    metrics.emailsDelivered.inc({ sink: sink.kind }, delivered.length);
    const now = Date.now();
    for (const e of delivered) this.series.endToEnd.observe(Math.max(0, now - appendedAtMs(e.id)) / 1000);
  }

  private async handleFailures(ops: StreamOps, failed: Failure[], previous: Map<string, FailureRecord>): Promise<void> {
    const { metrics, logger, sink } = this.o;
    await Promise.all(failed.map(async ({ entry, err, failedAt }) => {
      const decision = decideAfterFailure(err, previous.get(entry.id), { now: failedAt, consumer: this.o.consumer, settings: this.o.retry });
      if (decision.kind === 'retry') {
        const account = ops.keys.account;
        this.earliestRetry.set(account, Math.min(this.earliestRetry.get(account) ?? Infinity, decision.dueAt));
        await ops.recordFailure(entry.id, decision.record, decision.dueAt);
        metrics.emailsRetried.inc({ sink: sink.kind });
        logger.warn({ entryId: entry.id, account, attempts: decision.record.attempts, error: decision.record.lastError, retryInMs: decision.dueAt - Date.now() }, 'delivery failed; retry scheduled');
      } else {
        await this.deadLetter(ops, entry, decision);
      }
    }));
  }

  /**
   * Delivers one entry left behind by a worker that died (or stopped mid-delivery), alone, with its
   * outcome settled before the next: if a worker dies on it again, nothing else was in hand. Each
   * such try is counted in Redis; past MAX_UNFINISHED_DELIVERIES it goes to the DLQ unsent.
   */
  async recover(ops: StreamOps, entry: StreamEntry): Promise<void> {
    if (this.o.stopping.aborted) return;
    const handouts = await ops.countHandout(entry.id);
    const [raw] = await ops.failureRecords([entry.id]);
    const decision = decideOnUnfinished(handouts, parseFailureRecord(raw), { now: Date.now(), consumer: this.o.consumer, limit: this.o.maxUnfinished });
    if (decision) await this.deadLetter(ops, entry, decision);
    else await this.process(ops, [entry], false);
    await this.settled();
    // Abandoned by a stop: the try did not end, so it stays counted.
    if (!this.o.stopping.aborted || decision) await ops.clearHandouts([entry.id]);
  }

  private async deadLetter(ops: StreamOps, entry: StreamEntry, decision: FailureDecision & { kind: 'dead-letter' }): Promise<void> {
    const dlqId = await ops.moveToDlq(entry, decision.record, decision.reason);
    if (!dlqId) return;
    this.o.metrics.emailsDeadLettered.inc({ reason: decision.reason });
    this.o.logger.error({ entryId: entry.id, account: ops.keys.account, attempts: decision.record.attempts, error: decision.record.lastError, reason: decision.reason, dlqId }, 'email dead-lettered');
  }
}
