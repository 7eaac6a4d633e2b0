// The worker's Redis state transitions, one Lua script each (src/core/scripts): acknowledge with
// a dedupe marker, record a failure and its retry time, dead-letter, claim due retries, claim
// orphans, remove dead consumers. Every key comes from keys.ts and is passed in KEYS.
import type { Result } from 'ioredis';
import type { AccountKeys, GroupKeys } from '../core/keys.ts';
import type { RedisClient } from '../core/redis.ts';
import { deliveredMarker, type RawEntry, type StreamEntry } from './entries.ts';
import type { DeadLetterReason, FailureRecord } from './retry-policy.ts';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    recordFailure(failures: string, retries: string, id: string, record: string, dueAt: number): Result<number, Context>;
    moveToDlq(stream: string, dlq: string, failures: string, retries: string, group: string, id: string, ...fields: string[]): Result<string | null, Context>;
    claimDueRetries(stream: string, retries: string, group: string, consumer: string, now: number, count: number): Result<[RawEntry[], string | null], Context>;
    claimOrphans(stream: string, retries: string, group: string, consumer: string, minIdleMs: number, count: number, scan: number): Result<Array<[string, string[] | false, number]>, Context>;
    removeDeadConsumers(stream: string, group: string, minIdleMs: number, self: string): Result<string[], Context>;
  }
}

export interface StreamOpsOptions {
  redis: RedisClient;
  keys: AccountKeys;
  group: string;
  consumer: string;
  dedupeTtlSeconds: number;
}

export class StreamOps {
  readonly keys: AccountKeys;
  /** This group's markers, retries, failure records and crash counts. */
  readonly groupKeys: GroupKeys;
  private readonly redis: RedisClient;
  private readonly group: string;
  private readonly consumer: string;
  private readonly ttl: number;

  constructor(options: StreamOpsOptions) {
    this.redis = options.redis;
    this.keys = options.keys;
    this.groupKeys = options.keys.group(options.group);
    this.group = options.group;
    this.consumer = options.consumer;
    this.ttl = options.dedupeTtlSeconds;
  }

  /** Creates the group (and the stream) unless it exists; a new group starts at the beginning. */
  async ensureGroup(): Promise<void> {
    try {
      await this.redis.xgroup('CREATE', this.keys.stream, this.group, '0', 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
    }
  }

  /** Which of these keys were delivered already (one MGET: all markers share the account's slot). */
  async deliveredKeys(entries: readonly StreamEntry[]): Promise<Set<string>> {
    if (entries.length === 0) return new Set();
    const markers = await this.redis.mget(entries.map((e) => deliveredMarker(this.groupKeys, e.key)));
    const done = new Set<string>();
    markers.forEach((m, i) => { if (m !== null) done.add(entries[i]!.key); });
    return done;
  }

  /**
   * Marks the keys delivered and acknowledges the entries in one MULTI/EXEC: as atomic as a
   * script (a crash never leaves an acknowledged entry without its marker), but one transaction
   * per batch instead of a script call per email. `retried`: some may have failure records.
   */
  async ackDelivered(entries: readonly StreamEntry[], retried: boolean): Promise<void> {
    if (entries.length === 0) return;
    const g = this.groupKeys;
    const ids = entries.map((e) => e.id);
    const tx = this.redis.multi();
    for (const e of entries) tx.set(deliveredMarker(g, e.key), '1', 'EX', this.ttl);
    tx.xack(this.keys.stream, this.group, ...ids);
    if (retried) tx.hdel(g.failures, ...ids).zrem(g.retries, ...ids).hdel(g.handouts, ...ids);
    const results = await tx.exec();
    const failed = results?.find(([err]) => err);
    if (!results || failed) throw failed?.[0] ?? new Error('acknowledgement transaction aborted');
  }

  /** Acknowledges entries whose payload was trimmed away: there is nothing left to deliver. */
  async ackMissing(ids: readonly string[]): Promise<void> {
    if (ids.length > 0) await this.redis.xack(this.keys.stream, this.group, ...ids);
  }

  async failureRecords(ids: readonly string[]): Promise<Array<string | null>> {
    if (ids.length === 0) return [];
    return this.redis.hmget(this.groupKeys.failures, ...ids);
  }

  recordFailure(id: string, record: FailureRecord, dueAt: number): Promise<number> {
    return this.redis.recordFailure(this.groupKeys.failures, this.groupKeys.retries, id, JSON.stringify(record), dueAt);
  }

  moveToDlq(entry: StreamEntry, record: FailureRecord, reason: DeadLetterReason): Promise<string | null> {
    const k = this.keys;
    const g = this.groupKeys;
    return this.redis.moveToDlq(k.stream, k.dlq, g.failures, g.retries, this.group, entry.id,
      'key', entry.key, 'email', entry.email, 'reason', reason, 'error', record.lastError,
      'attempts', String(record.attempts), 'firstFailureAt', new Date(record.firstFailureAt).toISOString(),
      'lastFailureAt', new Date(record.lastFailureAt).toISOString(), 'consumer', record.consumer, 'group', this.group,
      'originalId', entry.id, 'deadLetteredAt', new Date().toISOString());
  }

  /** Claims the due retries; also says when the next one is due (undefined: none waiting). */
  async claimDueRetries(now: number, count: number): Promise<{ due: RawEntry[]; nextDueAt: number | undefined }> {
    const [due, next] = await this.redis.claimDueRetries(this.keys.stream, this.groupKeys.retries, this.group, this.consumer, now, count);
    return { due, nextDueAt: next === null ? undefined : Number(next) };
  }

  /** Counts one more try of an entry left behind by a dead worker; returns the tries so far. */
  countHandout(id: string): Promise<number> {
    return this.redis.hincrby(this.groupKeys.handouts, id, 1);
  }

  async clearHandouts(ids: readonly string[]): Promise<void> {
    if (ids.length > 0) await this.redis.hdel(this.groupKeys.handouts, ...ids);
  }

  /** Which of these ids wait in the retries set. */
  async retryScheduled(ids: readonly string[]): Promise<Set<string>> {
    if (ids.length === 0) return new Set();
    const scores = await this.redis.zmscore(this.groupKeys.retries, ...ids);
    return new Set(ids.filter((_, i) => scores[i] !== null));
  }

  claimOrphans(minIdleMs: number, count: number): Promise<Array<[string, string[] | false, number]>> {
    return this.redis.claimOrphans(this.keys.stream, this.groupKeys.retries, this.group, this.consumer, minIdleMs, count, count * 10);
  }

  removeDeadConsumers(minIdleMs: number): Promise<string[]> {
    return this.redis.removeDeadConsumers(this.keys.stream, this.group, minIdleMs, this.consumer);
  }
}
