// Delivers batches of one account's entries: skips keys already delivered, hands the rest to the
// sink in one call through its circuit breaker, turns the outcomes into one settlement and gives
// it to the settler, which records it in one Redis step. While the sink is down (its breaker is
// open) an email it could not take is held and sent again when the breaker lets calls through,
// without being charged an attempt.
import { sleep } from '../core/backoff.ts';
import type { Breaker } from '../core/breaker.ts';
import { ERROR_KINDS, errorKind, type SinkFailureKind } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import { appendedAtMs, type StreamEntry } from './entries.ts';
import { InHand } from './in-hand.ts';
import { decideOnUnfinished, describeError, parseFailureRecord, type FailureRecord, type RetrySettings } from './retry-policy.ts';
import { addDeadLetter, addOutcome, emptySettlement, type Settlement } from './settlement-batch.ts';
import type { Settler } from './settler.ts';
import type { StreamOps } from './stream-ops.ts';
import type { Delivery, Outcome, Sink } from './sinks/types.ts';

export type SinkBreaker = Breaker<[readonly Delivery[], AbortSignal], Outcome[]>;

/** Thrown inside the breaker when most of a batch found the sink down, so the breaker counts it. */
export class SinkDownError extends Error {
  readonly outcomes: Outcome[];
  constructor(outcomes: Outcome[]) {
    super('the sink is unavailable');
    this.name = 'SinkDownError';
    this.outcomes = outcomes;
  }
}

/**
 * Tries of a batch that found the sink down, uncharged, before the breaker must have opened (the
 * sink's breaker opens after as many failures in a row: worker.ts).
 */
export const HOLD_WHILE_CLOSED = 10;

function sinkDown(outcome: Outcome): boolean {
  return outcome.status === 'retry' && ERROR_KINDS[outcome.kind ?? 'sink-failed'].waitOut;
}

/** Wraps a sink for its breaker: a batch most of which found the sink down is a failed call. */
export function breakerAction(sink: Sink): (batch: readonly Delivery[], signal: AbortSignal) => Promise<Outcome[]> {
  return async (batch, signal) => {
    const outcomes = await sink.deliver(batch, signal);
    if (outcomes.length !== batch.length) throw new Error(`sink ${sink.kind} answered ${outcomes.length} outcomes for ${batch.length} emails`);
    if (2 * outcomes.filter(sinkDown).length > outcomes.length) throw new SinkDownError(outcomes);
    return outcomes;
  };
}

/** A sink that threw instead of answering: every email of the batch is retried, sorted by kind. */
function thrownOutcome(err: unknown): Outcome {
  const kind = errorKind(err);
  if (ERROR_KINDS[kind].permanent) return { status: 'permanent', reason: describeError(err) };
  return { status: 'retry', reason: describeError(err), kind: kind.startsWith('sink-') ? kind as Exclude<SinkFailureKind, 'sink-rejected'> : 'sink-failed' };
}

export interface DelivererOptions {
  sink: Sink;
  breaker: SinkBreaker;
  settler: Settler;
  metrics: Metrics;
  logger: Logger;
  retry: RetrySettings;
  group: string;
  /** Hand-outs with no outcome before an entry is dead-lettered (MAX_UNFINISHED_DELIVERIES). */
  maxUnfinished: number;
  consumer: string;
  /** Aborted when shutdown begins: no new attempt starts, waiting entries are left pending. */
  stopping: AbortSignal;
  /** Aborted when the shutdown timeout runs out: deliveries under way are given up. */
  giveUp: AbortSignal;
  /** How often a delivery waiting on an open breaker looks again. */
  breakerPollMs: number;
  /** A retry was scheduled: the worker's scheduler wakes the account for it. */
  onRetryScheduled?(account: string, dueAt: number): void;
}

export class Deliverer {
  private readonly o: DelivererOptions;
  /** Entries this process holds (being delivered, or their outcome not yet recorded). */
  readonly inHand = new InHand();
  /** Emails inside sink calls right now. */
  private delivering = 0;
  private readonly series;

  constructor(options: DelivererOptions) {
    this.o = options;
    const sink = { sink: options.sink.kind };
    this.series = {
      duration: options.metrics.deliveryDuration.labels(sink),
      batchSize: options.metrics.deliveryBatchSize.labels(sink),
      endToEnd: options.metrics.endToEndLatency.labels(sink),
      delivered: options.metrics.emailsDelivered.labels(sink),
      retried: options.metrics.emailsRetried.labels(sink),
    };
  }

  get inFlight(): number { return this.delivering; }

  /**
   * Delivers entries read for the first time (`records` undefined) or taken up again with their
   * failure records. Resolves once the outcomes are handed to the settler, not when they are
   * recorded: the next read overlaps the settle.
   */
  async process(ops: StreamOps, entries: readonly StreamEntry[], records?: ReadonlyMap<string, FailureRecord>): Promise<void> {
    if (entries.length === 0) return;
    this.inHand.add(ops.account, entries.map((e) => e.id));
    const release = (list: readonly StreamEntry[]) => this.inHand.delete(ops.account, list.map((e) => e.id));
    let submitted = false;
    try {
      submitted = await this.processInHand(ops, entries, records, release);
    } finally {
      // Once submitted, the settler lets go of what it records; before, nothing holds them.
      if (!submitted) release(entries);
    }
  }

  /**
   * Entries a worker left behind (this one before a restart, or a dead one): counted, then those
   * taken up for the first time go as one batch; those a worker already took up before without an
   * outcome go one at a time, each recorded before the next, so an email that kills workers takes
   * nothing else along; past MAX_UNFINISHED_DELIVERIES it goes to the DLQ unsent.
   */
  async recover(ops: StreamOps, entries: readonly StreamEntry[]): Promise<void> {
    if (entries.length === 0 || this.o.stopping.aborted) return;
    const counts = await ops.beginRecovery('batch', entries.map((e) => e.id));
    const firstTime: StreamEntry[] = [];
    const alone: StreamEntry[] = [];
    const records = new Map<string, FailureRecord>();
    for (const entry of entries) {
      const count = counts.get(entry.id);
      if (!count || count.taken < 0) continue; // waiting for its scheduled retry
      const record = parseFailureRecord(count.record);
      if (record) records.set(entry.id, record);
      (count.taken === 0 ? firstTime : alone).push(entry);
    }
    await this.process(ops, firstTime, records);
    if (alone.length === 0) return;
    for (const entry of alone) {
      await this.o.settler.idle();
      if (this.o.stopping.aborted) return;
      // Counted only now, as it goes: one queued behind an email that kills the worker is not
      // charged for that death.
      const count = (await ops.beginRecovery('alone', [entry.id])).get(entry.id);
      if (!count || count.taken < 0) continue;
      const now = Date.now();
      const record = parseFailureRecord(count.record);
      const decision = decideOnUnfinished(count.taken + 1, record, { now, consumer: this.o.consumer, limit: this.o.maxUnfinished });
      if (decision) {
        const unfinished = emptySettlement(true);
        addDeadLetter(unfinished, entry.id, decision.reason, decision.record, { group: this.o.group, now });
        this.inHand.add(ops.account, [entry.id]);
        await this.settle(ops, unfinished, [entry]);
      } else {
        await this.process(ops, [entry], record ? new Map([[entry.id, record]]) : records);
      }
    }
    // The last one alone is recorded too before anything else is taken up.
    await this.o.settler.idle();
  }

  private async processInHand(ops: StreamOps, entries: readonly StreamEntry[], records: ReadonlyMap<string, FailureRecord> | undefined,
    release: (list: readonly StreamEntry[]) => void): Promise<boolean> {
    const { settler } = this.o;
    const done = await this.deliveredKeys(ops, entries);
    const settlement = emptySettlement(records !== undefined);
    const now: StreamEntry[] = [];
    const later: StreamEntry[] = [];
    const inBatch = new Set<string>();
    for (const e of entries) {
      if (done.has(e.key)) settlement.duplicates.push(e.id);
      else if (inBatch.has(e.key)) later.push(e); // same key twice in one batch: wait for the first
      else { inBatch.add(e.key); now.push(e); }
    }
    if (settlement.duplicates.length > 0) this.o.metrics.emailsDeduplicated.inc(settlement.duplicates.length);

    const deliveries: Delivery[] = now.map((e) => ({ ...e, account: ops.account, previousAttempts: records?.get(e.id)?.attempts ?? 0 }));
    const outcomes = await this.deliverBatch(deliveries);
    const answeredAt = Date.now();
    const abandoned: StreamEntry[] = [];
    outcomes.forEach((outcome, i) => {
      const entry = now[i]!;
      if (!outcome) { abandoned.push(entry); return; }
      addOutcome(settlement, entry, outcome, records?.get(entry.id), { group: this.o.group, consumer: this.o.consumer, settings: this.o.retry, now: answeredAt });
    });
    const unsettled = new Set([...abandoned, ...later]);
    const settled = entries.filter((e) => !unsettled.has(e));
    if (settled.length > 0) void this.settle(ops, settlement, settled);
    release(abandoned);
    try {
      if (later.length > 0 && !this.o.stopping.aborted) {
        // The second of two entries with one key waits until the first one's marker is recorded.
        await settler.idle();
        await this.process(ops, later, records);
      }
    } finally {
      release(later);
    }
    return true;
  }

  /** The dedupe check, made again if a settle was refused meanwhile (its markers may be missing). */
  private async deliveredKeys(ops: StreamOps, entries: readonly StreamEntry[]): Promise<Set<string>> {
    const { settler } = this.o;
    const refusals = settler.refusals;
    let done = await ops.deliveredKeys(entries);
    if (settler.blocked || settler.refusals !== refusals) {
      await settler.unblocked();
      await settler.idle();
      done = await ops.deliveredKeys(entries);
    }
    return done;
  }

  /** Hands the settlement to the settler; counts and logs each outcome once Redis has it. */
  private settle(ops: StreamOps, settlement: Settlement, entries: readonly StreamEntry[]): Promise<unknown> {
    const { metrics, logger } = this.o;
    const recorded = this.o.settler.submit(ops, settlement).then(({ deadLetterIds }) => {
      if (settlement.delivered.length > 0) {
        this.series.delivered.inc(settlement.delivered.length);
        const now = Date.now();
        for (const e of settlement.delivered) this.series.endToEnd.observe(Math.max(0, now - appendedAtMs(e.id)) / 1000);
      }
      for (const r of settlement.retries) {
        // Only now that the retry is in Redis: woken earlier, the account would find nothing due.
        this.o.onRetryScheduled?.(ops.account, r.dueAt);
        this.series.retried.inc();
        logger.warn({ entryId: r.id, account: ops.account, attempts: r.record.attempts, error: r.record.lastError, retryInMs: r.dueAt - Date.now() }, 'delivery failed; retry scheduled');
      }
      settlement.deadLetters.forEach((d, i) => {
        const dlqId = deadLetterIds[i];
        if (!dlqId) return; // settled before (a re-sent settle): counted then
        metrics.emailsDeadLettered.inc({ reason: d.reason });
        logger.error({ entryId: d.id, account: ops.account, attempts: d.record.attempts, error: d.record.lastError, reason: d.reason, dlqId }, 'email dead-lettered');
      });
    }, (err: unknown) => {
      // Only at the shutdown timeout: the entries stay pending and are delivered again, same key.
      logger.warn({ err, account: ops.account, entries: entries.length }, 'outcomes not recorded before the shutdown timeout; the entries stay pending');
    }).finally(() => this.inHand.delete(ops.account, entries.map((e) => e.id)));
    return recorded;
  }

  /**
   * One sink call for the batch, through the breaker. Emails the sink could not take because it
   * is down wait for the breaker and go again, uncharged. An outcome is undefined for an email
   * abandoned at shutdown: it stays pending.
   */
  private async deliverBatch(deliveries: readonly Delivery[]): Promise<Array<Outcome | undefined>> {
    const { breaker, metrics, stopping, giveUp, sink } = this.o;
    const outcomes: Array<Outcome | undefined> = new Array(deliveries.length).fill(undefined);
    let waiting = deliveries.map((_, i) => i);
    /** Tries held back uncharged while the breaker was still closed (see below). */
    let heldWhileClosed = 0;
    while (waiting.length > 0) {
      if (stopping.aborted) break;
      if (breaker.opened) { await sleep(this.o.breakerPollMs, stopping); continue; }
      const batch = waiting.map((i) => deliveries[i]!);
      let answers: Outcome[];
      /** Most of the batch found the sink down: the sink's fault, not these emails'. */
      let sinkWide = false;
      const stopTimer = this.series.duration.startTimer();
      this.series.batchSize.observe(batch.length);
      this.delivering += batch.length;
      metrics.inFlight.set(this.delivering);
      try {
        answers = await breaker.fire(batch, giveUp);
      } catch (err) {
        if ((err as { code?: unknown }).code === 'EOPENBREAKER') { await sleep(this.o.breakerPollMs, stopping); continue; }
        if (giveUp.aborted) break;
        answers = err instanceof SinkDownError ? err.outcomes : batch.map(() => thrownOutcome(err));
        sinkWide = answers.some(sinkDown);
      } finally {
        stopTimer();
        this.delivering -= batch.length;
        metrics.inFlight.set(this.delivering);
      }
      const again: number[] = [];
      const gaveUp = giveUp.aborted;
      answers.forEach((answer, j) => {
        const index = waiting[j]!;
        // Given up at the shutdown timeout: what the sink did not finish stays pending, uncharged.
        if (gaveUp && answer.status === 'retry') return;
        if (answer.status !== 'delivered') metrics.deliveryFailures.inc({ sink: sink.kind, kind: answer.status === 'permanent' ? 'sink-rejected' : answer.kind ?? 'sink-failed' });
        // The sink is down, not the email at fault: keep it, uncharged, and send it again when the
        // breaker lets calls through. One email failing alone among good ones is charged, and so
        // is a batch the sink keeps refusing while the breaker, judging every call, stays closed:
        // an email that alone makes the sink answer 503 must still reach the DLQ in the end.
        const hold = sinkDown(answer) && (breaker.opened || (sinkWide && heldWhileClosed < HOLD_WHILE_CLOSED));
        if (hold) again.push(index);
        else outcomes[index] = answer;
      });
      waiting = again;
      if (again.length > 0 && !breaker.opened) {
        heldWhileClosed += 1;
        await sleep(this.o.breakerPollMs, stopping);
      }
    }
    return outcomes;
  }
}
