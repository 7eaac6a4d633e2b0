// One account's turn: what the scheduler (turns.ts) asked for, in this order: the retries that
// are due, orphans claimed from dead consumers, then one batch of the stream (at start our own
// pending entries first, ID 0..., then `>`). Reads never block: they go on the shared command
// connection, and the scheduler only gives a turn to an account it has reason to think has work
// (a signal, a full batch before, a retry due, the periodic sweep). A turn answers what may still
// be waiting, so the account goes back in line for it.
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import type { RedisClient } from '../core/redis.ts';
import type { Deliverer, SinkBreaker } from './deliver.ts';
import { parseEntries, type RawEntry } from './entries.ts';
import { WORK, type Work } from './ready-queue.ts';
import { parseFailureRecord, type FailureRecord } from './retry-policy.ts';
import type { StreamOps } from './stream-ops.ts';

export interface TurnSettings {
  group: string;
  consumer: string;
  readBatchSize: number;
  claimIdleMs: number;
  /** A consumer idle this long with nothing pending is gone (a live worker looks every WORKER_SWEEP_MS at least). */
  deadConsumerIdleMs: number;
}

export interface AccountTurnOptions {
  ops: StreamOps;
  /** The auto-pipelined command connection: XREADGROUP without BLOCK. */
  redis: RedisClient;
  deliverer: Deliverer;
  breaker: SinkBreaker;
  settings: TurnSettings;
  metrics: Metrics;
  logger: Logger;
  stopping: AbortSignal;
  /** When the earliest retry still waiting in the account falls due (from claimDueRetries). */
  onRetryDue(account: string, dueAt: number): void;
}

type ReadReply = Array<[stream: string, entries: RawEntry[]]> | null;

export class AccountTurn {
  private readonly o: AccountTurnOptions;
  /** `0`-based history cursor while re-reading our own pending entries, then `>`. */
  private cursor = '0';
  private groupReady = false;
  /** The next read of new entries, sent while a full batch is delivered (see readBatch). */
  private readAhead: Promise<RawEntry[]> | undefined;
  /** How long the last batch of new entries took to deliver; none yet counts as slow. */
  private lastBatchMs = Infinity;

  constructor(options: AccountTurnOptions) {
    this.o = options;
  }

  get account(): string { return this.o.ops.keys.account; }

  /** The group vanished (NOGROUP after a restore): create it again next turn. */
  groupLost(): void { this.groupReady = false; }

  /** Does what `work` asks; returns what may still be waiting. */
  async run(work: Work): Promise<Work> {
    if (!this.groupReady) {
      await this.o.ops.ensureGroup();
      this.groupReady = true;
    }
    let more: Work = 0;
    if (work & WORK.retries && await this.dueRetries()) more |= WORK.retries;
    if (work & WORK.claim && await this.claimOrphans()) more |= WORK.claim;
    if (work & WORK.read && !this.o.stopping.aborted) {
      // The sink went down during this turn: nothing new is read, the account waits its next turn.
      if (this.o.breaker.opened) more |= WORK.read;
      else if (await this.readBatch()) more |= WORK.read;
    }
    return more;
  }

  /** Returns whether a whole batch came (more may be waiting). */
  private async readBatch(): Promise<boolean> {
    const { settings, deliverer, breaker, stopping } = this.o;
    if (this.cursor !== '>') {
      // After a restart: our own pending entries, left by the process that died or stopped, taken
      // up as entries left behind (counted; those taken up before without an outcome go alone).
      const raw = await this.read(this.cursor);
      if (raw.length > 0) {
        this.cursor = raw[raw.length - 1]![0];
        // Those this process holds already (a due retry or an orphan claim earlier in this turn,
        // its outcome not yet recorded) are in good hands: taken up again they would go twice.
        await this.recover(raw.filter(([id]) => !deliverer.inHand.has(this.account, id)));
        return true;
      }
      this.cursor = '>';
    }
    const ahead = this.readAhead;
    this.readAhead = undefined;
    const raw = await (ahead ?? this.read('>'));
    const full = raw.length === settings.readBatchSize;
    // A full batch means a backlog: the next read goes out now and its round trip overlaps this
    // delivery. It is safe for dedupe because this account's batches are still delivered one after
    // another, and the dedupe check of the next batch is sent only after this one's settle. Never
    // while the breaker is open or half-open: entries read then would only wait in this process.
    // Only while batches are quick: a slow sink gains nothing from it.
    const quick = this.lastBatchMs < settings.claimIdleMs / 4;
    if (full && quick && !stopping.aborted && !breaker.opened && !breaker.halfOpen) {
      const next = this.read('>').then((entries) => {
        deliverer.inHand.add(this.account, entries.map(([id]) => id));
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
      if (ahead) deliverer.inHand.delete(this.account, raw.map(([id]) => id));
    }
    return full;
  }

  private async read(from: string): Promise<RawEntry[]> {
    const { ops, settings } = this.o;
    const reply = (await this.o.redis.xreadgroup('GROUP', settings.group, settings.consumer, 'COUNT', settings.readBatchSize,
      'STREAMS', ops.keys.stream, from)) as ReadReply;
    return reply?.[0]?.[1] ?? [];
  }

  /** Returns whether a whole batch was due (more may be). */
  private async dueRetries(): Promise<boolean> {
    const { ops, settings } = this.o;
    const retries = await ops.claimDueRetries(Date.now(), settings.readBatchSize);
    if (retries.nextDueAt !== undefined) this.o.onRetryDue(this.account, retries.nextDueAt);
    const records = new Map<string, FailureRecord>();
    for (const [id, raw] of retries.records) { const record = parseFailureRecord(raw); if (record) records.set(id, record); }
    await this.deliver(retries.due, records);
    return retries.due.length === settings.readBatchSize;
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
    const { ops, settings, metrics, logger, deliverer } = this.o;
    const found = await ops.claimOrphans(settings.claimIdleMs, settings.readBatchSize);
    const claimed = found.filter(([id]) => !deliverer.inHand.has(this.account, id));
    if (claimed.length > 0) {
      metrics.orphansClaimed.inc(claimed.length);
      // A high delivery count means these entries were handed out again and again without an
      // outcome: a worker dying on them is worth an operator's look.
      const maxDeliveries = Math.max(...claimed.map(([, , deliveries]) => deliveries));
      logger.info({ account: this.account, count: claimed.length, maxDeliveries }, 'claimed orphaned entries');
      await this.recover(claimed.map(([id, fields]) => [id, fields] as RawEntry));
    }
    if (found.length === settings.readBatchSize) return true;
    const removed = await ops.removeDeadConsumers(settings.deadConsumerIdleMs);
    if (removed.length > 0) {
      metrics.consumersRemoved.inc(removed.length);
      logger.info({ account: this.account, consumers: removed }, 'removed dead consumers with nothing pending');
    }
    return false;
  }
}
