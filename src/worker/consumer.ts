// The loops of one account's stream. The read loop takes new entries (XREADGROUP with a finite
// BLOCK on a connection of its own; at start it first re-reads its own pending entries, ID 0...,
// then `>`) and hands them to the deliverer. The retry loop, beside it, performs the retries as
// they fall due and now and then claims orphans from dead consumers, so a retry is never held up
// behind a slow batch. While the sink's breaker is open, or Redis refuses to record outcomes
// this worker holds, neither loop takes anything: entries wait in the stream.
import { Backoff, sleep } from '../core/backoff.ts';
import { redisErrorKind } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import type { RedisClient } from '../core/redis.ts';
import type { Deliverer, SinkBreaker } from './deliver.ts';
import { parseEntries, type RawEntry } from './entries.ts';
import { parseFailureRecord, type FailureRecord } from './retry-policy.ts';
import type { Settler } from './settler.ts';
import type { StreamOps } from './stream-ops.ts';

export interface ConsumerSettings {
  group: string;
  consumer: string;
  readBatchSize: number;
  readBlockMs: number;
  claimIdleMs: number;
  claimIntervalMs: number;
}

export interface AccountConsumerOptions {
  ops: StreamOps;
  /** Used for XREADGROUP BLOCK only. */
  blocking: RedisClient;
  deliverer: Deliverer;
  settler: Settler;
  breaker: SinkBreaker;
  settings: ConsumerSettings;
  metrics: Metrics;
  logger: Logger;
  stopping: AbortSignal;
  breakerPollMs: number;
}

type ReadReply = Array<[stream: string, entries: RawEntry[]]> | null;

/** How often the retry loop looks at the clock; Redis is asked only when something is due. */
const RETRY_TICK_MS = 50;

export class AccountConsumer {
  private readonly o: AccountConsumerOptions;
  /** `0`-based history cursor while re-reading our own pending entries, then `>`. */
  private cursor = '0';
  private nextClaimAt = 0;
  /** When to look for due retries next: the earliest known due time, at least every READ_BLOCK_MS. */
  private retryCheckAt = 0;
  private group: Promise<void> | undefined;
  /** The next read of new entries, sent while a full batch is delivered (see readTurn). */
  private readAhead: Promise<RawEntry[]> | undefined;
  /** How long the last batch of new entries took to deliver; none yet counts as slow. */
  private lastBatchMs = Infinity;

  constructor(options: AccountConsumerOptions) {
    this.o = options;
  }

  get account(): string { return this.o.ops.keys.account; }

  async run(): Promise<void> {
    await Promise.all([this.loop('read', () => this.readTurn()), this.loop('retry', () => this.retryTurn())]);
  }

  private async loop(name: string, turn: () => Promise<void>): Promise<void> {
    const { stopping, logger, breaker } = this.o;
    const failures = new Backoff({ baseMs: 100, maxMs: 5_000 });
    while (!stopping.aborted) {
      try {
        // First turn, or the group vanished (NOGROUP after a restore): creating it is harmless.
        this.group ??= this.o.ops.ensureGroup().catch((err: unknown) => { this.group = undefined; throw err; });
        await this.group;
        if (breaker.opened) await sleep(this.o.breakerPollMs, stopping);
        else if (this.o.settler.blocked) await this.o.settler.unblocked(stopping);
        else await turn();
        failures.reset();
      } catch (err) {
        if (stopping.aborted) break;
        if (redisErrorKind(err) === 'redis-nogroup') this.group = undefined;
        const delay = failures.next();
        logger.warn({ err, account: this.account, loop: name, retryInMs: delay }, 'worker loop failed; retrying');
        await sleep(delay, stopping);
      }
    }
  }

  private async readTurn(): Promise<void> {
    const { settings } = this.o;
    const reading = this.cursor;
    if (reading !== '>') {
      // After a restart: our own pending entries, left by the process that died or stopped, taken
      // up as entries left behind (counted; those taken up before without an outcome go alone).
      const raw = await this.read(reading, settings.readBatchSize);
      if (raw.length === 0) { this.cursor = '>'; return; }
      this.cursor = raw[raw.length - 1]![0];
      await this.recover(raw);
      return;
    }
    const ahead = this.readAhead;
    this.readAhead = undefined;
    const raw = await (ahead ?? this.read('>', settings.readBatchSize));
    // A full batch means a backlog: the next read goes out now and its round trip overlaps this
    // delivery. It is safe for dedupe because batches are still delivered one after another, and
    // the dedupe check of the next batch is sent only after this one's acknowledgements. Entries
    // read ahead when the worker stops stay pending and are re-read or claimed like any others.
    // Only while batches are quick: entries waiting behind a slow one would look idle to other
    // workers (CLAIM_IDLE_MS) and be claimed and sent twice; a slow sink gains nothing from it.
    const quick = this.lastBatchMs < settings.claimIdleMs / 4;
    if (raw.length === settings.readBatchSize && quick && !this.o.stopping.aborted && !this.o.breaker.opened) {
      const next = this.read('>', settings.readBatchSize).then((entries) => {
        this.o.deliverer.inHand.add(this.account, entries.map(([id]) => id));
        return entries;
      });
      next.catch(() => undefined); // awaited next turn; a failure is handled there
      this.readAhead = next;
    }
    const started = Date.now();
    try {
      await this.deliver(raw);
      if (raw.length > 0) this.lastBatchMs = Date.now() - started;
    } finally {
      // Read-ahead ids were held since the read; from here the deliverer holds what it still has.
      if (ahead) this.o.deliverer.inHand.delete(this.account, raw.map(([id]) => id));
    }
  }

  private async read(from: string, count: number): Promise<RawEntry[]> {
    const { ops, settings } = this.o;
    const reply = (await this.o.blocking.xreadgroup('GROUP', settings.group, settings.consumer, 'COUNT', count,
      'BLOCK', settings.readBlockMs, 'STREAMS', ops.keys.stream, from)) as ReadReply;
    return reply?.[0]?.[1] ?? [];
  }

  private async retryTurn(): Promise<void> {
    const { ops, settings, stopping } = this.o;
    const scheduled = this.o.deliverer.takeEarliestRetry(this.account);
    if (scheduled !== undefined) this.retryCheckAt = Math.min(this.retryCheckAt, scheduled);
    if (Date.now() >= this.retryCheckAt) {
      const retries = await ops.claimDueRetries(Date.now(), settings.readBatchSize);
      this.retryCheckAt = Math.min(retries.nextDueAt ?? Infinity, Date.now() + settings.readBlockMs);
      const records = new Map<string, FailureRecord>();
      for (const [id, raw] of retries.records) { const record = parseFailureRecord(raw); if (record) records.set(id, record); }
      await this.deliver(retries.due, records);
    }
    if (Date.now() >= this.nextClaimAt) {
      this.nextClaimAt = Date.now() + settings.claimIntervalMs;
      // A full claim means a dead worker left more behind: go on at batch speed, not per interval.
      if (await this.claimOrphans()) this.nextClaimAt = 0;
    }
    // More orphans are waiting (a full claim): straight on, no tick.
    if (this.nextClaimAt === 0) return;
    await sleep(Math.max(1, Math.min(RETRY_TICK_MS, this.retryCheckAt - Date.now())), stopping);
  }

  /** `records`: entries taken up again (due retries) with their failure records; none for new ones. */
  private async deliver(raw: RawEntry[], records?: Map<string, FailureRecord>): Promise<void> {
    if (raw.length === 0) return;
    const parsed = parseEntries(raw);
    await this.o.ops.ackMissing(parsed.missing);
    await this.o.deliverer.process(this.o.ops, parsed.entries, records);
  }

  /** Entries a worker left behind: see Deliverer.recover. */
  private async recover(raw: RawEntry[]): Promise<void> {
    if (raw.length === 0) return;
    const parsed = parseEntries(raw);
    await this.o.ops.ackMissing(parsed.missing);
    await this.o.deliverer.recover(this.o.ops, parsed.entries);
  }

  /** Returns whether a whole batch was claimed (more may be waiting). */
  private async claimOrphans(): Promise<boolean> {
    const { ops, settings, metrics, logger } = this.o;
    const found = await ops.claimOrphans(settings.claimIdleMs, settings.readBatchSize);
    const claimed = found.filter(([id]) => !this.o.deliverer.inHand.has(this.account, id));
    if (claimed.length > 0) {
      metrics.orphansClaimed.inc(claimed.length);
      // A high delivery count means these entries were handed out again and again without an
      // outcome: a worker dying on them is worth an operator's look.
      const maxDeliveries = Math.max(...claimed.map(([, , deliveries]) => deliveries));
      logger.info({ account: this.account, count: claimed.length, maxDeliveries }, 'claimed orphaned entries');
      await this.recover(claimed.map(([id, fields]) => [id, fields] as RawEntry));
    }
    const full = found.length === settings.readBatchSize;
    if (full) return true;
    // A live worker reads at least every READ_BLOCK_MS, so one idle for many of those is gone.
    const removed = await ops.removeDeadConsumers(Math.max(settings.claimIdleMs, 10 * settings.readBlockMs));
    if (removed.length > 0) {
      metrics.consumersRemoved.inc(removed.length);
      logger.info({ account: this.account, consumers: removed }, 'removed dead consumers with nothing pending');
    }
    return false;
  }
}
