// The read loop of one account's stream. Each turn: performs the retries that are due, now and
// then claims orphans from dead consumers, then reads new entries (XREADGROUP, finite BLOCK on a
// connection of its own) and hands them to the deliverer. At start it first re-reads its own
// pending entries (ID 0...) before taking new ones (`>`). While the sink's breaker is open it
// does not read at all, so entries wait in the stream.
import { Backoff, sleep } from '../core/backoff.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import type { RedisClient } from '../core/redis.ts';
import type { Deliverer, SinkBreaker } from './deliver.ts';
import { parseEntries, type RawEntry } from './entries.ts';
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
  breaker: SinkBreaker;
  settings: ConsumerSettings;
  metrics: Metrics;
  logger: Logger;
  stopping: AbortSignal;
  breakerPollMs: number;
}

type ReadReply = Array<[stream: string, entries: RawEntry[]]> | null;

export class AccountConsumer {
  private readonly o: AccountConsumerOptions;
  /** `0`-based history cursor while re-reading our own pending entries, then `>`. */
  private cursor = '0';
  private nextClaimAt = 0;
  private groupReady = false;
  private readonly failures = new Backoff({ baseMs: 100, maxMs: 5_000 });

  constructor(options: AccountConsumerOptions) {
    this.o = options;
  }

  get account(): string { return this.o.ops.keys.account; }

  async run(): Promise<void> {
    const { stopping, logger } = this.o;
    while (!stopping.aborted) {
      try {
        await this.turn();
        this.failures.reset();
      } catch (err) {
        if (stopping.aborted) break;
        if (String((err as Error).message).includes('NOGROUP')) this.groupReady = false;
        const delay = this.failures.next();
        logger.warn({ err, account: this.account, retryInMs: delay }, 'worker loop failed; retrying');
        await sleep(delay, stopping);
      }
    }
  }

  private async turn(): Promise<void> {
    const { ops, deliverer, breaker, settings, stopping } = this.o;
    // First turn, or the group vanished (NOGROUP after a restore): creating it again is harmless.
    if (!this.groupReady) { await ops.ensureGroup(); this.groupReady = true; }
    if (breaker.opened) { await sleep(this.o.breakerPollMs, stopping); return; }

    const retries = await ops.claimDueRetries(Date.now(), settings.readBatchSize);
    const due = parseEntries(retries.due);
    await ops.ackMissing(due.missing);
    await deliverer.process(ops, due.entries, false);

    if (Date.now() >= this.nextClaimAt) {
      this.nextClaimAt = Date.now() + settings.claimIntervalMs;
      await this.claimOrphans();
    }
    if (stopping.aborted || breaker.opened) return;

    // Block no longer than until the next retry is due (any worker may have scheduled it).
    const nextRetry = retries.nextDueAt;
    const block = nextRetry === undefined ? settings.readBlockMs : Math.max(1, Math.min(settings.readBlockMs, nextRetry - Date.now()));
    const reading = this.cursor;
    const reply = (await this.o.blocking.xreadgroup('GROUP', settings.group, settings.consumer, 'COUNT', settings.readBatchSize,
      'BLOCK', block, 'STREAMS', ops.keys.stream, reading)) as ReadReply;
    const raw = reply?.[0]?.[1] ?? [];
    if (reading !== '>') {
      // Re-reading our own pending entries after a restart: skip those waiting for their retry.
      if (raw.length === 0) { this.cursor = '>'; return; }
      this.cursor = raw[raw.length - 1]![0];
      const waiting = await ops.retryScheduled(raw.map(([id]) => id));
      const parsed = parseEntries(raw.filter(([id]) => !waiting.has(id)));
      await ops.ackMissing(parsed.missing);
      await deliverer.process(ops, parsed.entries, false);
      return;
    }
    const parsed = parseEntries(raw);
    await ops.ackMissing(parsed.missing);
    await deliverer.process(ops, parsed.entries, true);
  }

  private async claimOrphans(): Promise<void> {
    const { ops, settings, metrics, logger, deliverer } = this.o;
    const claimed = await ops.claimOrphans(settings.claimIdleMs, settings.readBatchSize);
    if (claimed.length > 0) {
      metrics.orphansClaimed.inc(claimed.length);
      logger.info({ account: this.account, count: claimed.length }, 'claimed orphaned entries');
      const parsed = parseEntries(claimed.map(([id, fields]) => [id, fields] as RawEntry));
      await ops.ackMissing(parsed.missing);
      await deliverer.process(ops, parsed.entries, false);
    }
    // A live worker reads at least every READ_BLOCK_MS, so one idle for many of those is gone.
    const removed = await ops.removeDeadConsumers(Math.max(settings.claimIdleMs, 10 * settings.readBlockMs));
    if (removed.length > 0) {
      metrics.consumersRemoved.inc(removed.length);
      logger.info({ account: this.account, consumers: removed }, 'removed dead consumers with nothing pending');
    }
  }
}
