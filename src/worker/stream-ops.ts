// The worker's Redis state transitions on one account's stream, one Lua script each
// (src/core/scripts): settle a batch, claim due retries, begin the recovery of entries left
// behind, claim orphans, keep held entries from looking orphaned, remove dead consumers. Every key
// comes from keys.ts and is passed in KEYS.
import type { Result } from 'ioredis';
import { redisErrorKind } from '../core/errors.ts';
import type { AccountKeys, GroupKeys } from '../core/keys.ts';
import type { RedisClient } from '../core/redis.ts';
import { deliveredMarker, type RawEntry, type StreamEntry } from './entries.ts';
import type { Settlement } from './settlement-batch.ts';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    settleBatch(numberOfKeys: number, ...keysAndArgs: Array<string | number>): Result<[acknowledged: number, retriesRecorded: number, deadLetterIds: Array<string | null>], Context>;
    claimDueRetries(stream: string, retries: string, failures: string, group: string, consumer: string, now: number, count: number): Result<[RawEntry[], Array<string | null>, string | null], Context>;
    beginRecovery(handouts: string, failures: string, retries: string, mode: 'batch' | 'alone', ...ids: string[]): Result<Array<[taken: number, record: string | null]>, Context>;
    touchPending(stream: string, group: string, consumer: string, ...ids: string[]): Result<number, Context>;
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

/** An entry taken up again: how often it was taken up before without an outcome (-1: waiting for its retry), and its record. */
export interface RecoveryCount { taken: number; record: string | null }

export class StreamOps {
  readonly keys: AccountKeys;
  /** This group's markers, retries, failure records and crash counts. */
  readonly groupKeys: GroupKeys;
  readonly group: string;
  private readonly redis: RedisClient;
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

  get account(): string { return this.keys.account; }

  /** Creates the group (and the stream) unless it exists; a new group starts at the beginning. */
  async ensureGroup(): Promise<void> {
    try {
      await this.redis.xgroup('CREATE', this.keys.stream, this.group, '0', 'MKSTREAM');
    } catch (err) {
      if (redisErrorKind(err) !== 'redis-busygroup') throw err;
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

  /** Records a batch's outcomes in one script call (settleBatch); see its header. */
  async settle(s: Settlement): Promise<{ deadLetterIds: Array<string | null> }> {
    const k = this.keys;
    const g = this.groupKeys;
    const keys = [k.stream, k.dlq, g.failures, g.retries, g.handouts, ...s.delivered.map((e) => deliveredMarker(g, e.key))];
    const args: Array<string | number> = [this.group, this.ttl, s.mayHaveRetryState ? 1 : 0];
    args.push(s.delivered.length, ...s.delivered.map((e) => e.id));
    args.push(s.duplicates.length, ...s.duplicates);
    args.push(s.retries.length);
    for (const r of s.retries) args.push(r.id, r.record.attempts, JSON.stringify(r.record), r.dueAt);
    args.push(s.deadLetters.length);
    for (const d of s.deadLetters) args.push(d.id, d.fields.length, ...d.fields);
    const [, , deadLetterIds] = await this.redis.settleBatch(keys.length, ...keys, ...args);
    return { deadLetterIds };
  }

  /** Acknowledges entries whose payload was trimmed away: there is nothing left to deliver. */
  async ackMissing(ids: readonly string[]): Promise<void> {
    if (ids.length > 0) await this.redis.xack(this.keys.stream, this.group, ...ids);
  }

  /** Claims the due retries with their failure records; also says when the next one is due. */
  async claimDueRetries(now: number, count: number): Promise<{ due: RawEntry[]; records: Map<string, string>; nextDueAt: number | undefined }> {
    const [due, records, next] = await this.redis.claimDueRetries(this.keys.stream, this.groupKeys.retries, this.groupKeys.failures, this.group, this.consumer, now, count);
    const byId = new Map<string, string>();
    due.forEach(([id], i) => { const r = records[i]; if (r) byId.set(id, r); });
    return { due, records: byId, nextDueAt: next === null ? undefined : Number(next) };
  }

  /** Counts the take-up of entries left behind: in `batch` mode only those never taken up before (see beginRecovery-3.lua). */
  async beginRecovery(mode: 'batch' | 'alone', ids: readonly string[]): Promise<Map<string, RecoveryCount>> {
    const counts = new Map<string, RecoveryCount>();
    if (ids.length === 0) return counts;
    const reply = await this.redis.beginRecovery(this.groupKeys.handouts, this.groupKeys.failures, this.groupKeys.retries, mode, ...ids);
    reply.forEach(([taken, record], i) => counts.set(ids[i]!, { taken: Number(taken), record }));
    return counts;
  }

  /** Resets the idle time of entries still ours, so no other worker claims them as orphans. */
  async touchPending(ids: readonly string[]): Promise<number> {
    if (ids.length === 0) return 0;
    return this.redis.touchPending(this.keys.stream, this.group, this.consumer, ...ids);
  }

  claimOrphans(minIdleMs: number, count: number): Promise<Array<[string, string[] | false, number]>> {
    return this.redis.claimOrphans(this.keys.stream, this.groupKeys.retries, this.group, this.consumer, minIdleMs, count, count * 10);
  }

  removeDeadConsumers(minIdleMs: number): Promise<string[]> {
    return this.redis.removeDeadConsumers(this.keys.stream, this.group, minIdleMs, this.consumer);
  }
}
