// Reading and handling dead letters for `mailstream dlq`: list, show, replay (atomically back to
// the email stream), purge.
import type { Result } from 'ioredis';
import type { AccountKeys } from '../core/keys.ts';
import type { RedisClient } from '../core/redis.ts';
import { announceEntries } from '../core/signals.ts';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    replayDeadLetter(dlq: string, stream: string, id: string): Result<string | null, Context>;
  }
}

export interface DeadLetter {
  id: string;
  key: string;
  reason: string;
  error: string;
  attempts: number;
  firstFailureAt: string;
  lastFailureAt: string;
  consumer: string;
  /** The consumer group (sink) that gave up on it. */
  group: string;
  originalId: string;
  deadLetteredAt: string;
  /** The email JSON as it was in the stream. */
  email: string;
}

function toDeadLetter(id: string, fields: string[]): DeadLetter {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
  return {
    id, key: f.key ?? '', reason: f.reason ?? '', error: f.error ?? '', attempts: Number(f.attempts ?? 0),
    firstFailureAt: f.firstFailureAt ?? '', lastFailureAt: f.lastFailureAt ?? '', consumer: f.consumer ?? '', group: f.group ?? '',
    originalId: f.originalId ?? '', deadLetteredAt: f.deadLetteredAt ?? '', email: f.email ?? '',
  };
}

/** Newest first. */
export async function listDeadLetters(redis: RedisClient, keys: AccountKeys, limit: number): Promise<DeadLetter[]> {
  const raw = await redis.xrevrange(keys.dlq, '+', '-', 'COUNT', limit);
  return raw.map(([id, fields]) => toDeadLetter(id, fields));
}

export async function showDeadLetter(redis: RedisClient, keys: AccountKeys, id: string): Promise<DeadLetter | undefined> {
  const [found] = await redis.xrange(keys.dlq, id, id);
  return found ? toDeadLetter(found[0], found[1]) : undefined;
}

/** Returns the new stream entry id per dead letter, or null for an id not in the DLQ. */
export async function replayDeadLetters(redis: RedisClient, keys: AccountKeys, ids: readonly string[]): Promise<Array<{ id: string; entryId: string | null }>> {
  const replayed = await Promise.all(ids.map(async (id) => ({ id, entryId: await redis.replayDeadLetter(keys.dlq, keys.stream, id) })));
  // Awaited: the CLI exits right after, and the workers should not wait for their sweep.
  if (replayed.some((r) => r.entryId !== null)) await announceEntries(redis, keys);
  return replayed;
}

export async function allDeadLetterIds(redis: RedisClient, keys: AccountKeys): Promise<string[]> {
  const ids: string[] = [];
  let start = '-';
  for (;;) {
    const page = await redis.xrange(keys.dlq, start, '+', 'COUNT', 1000);
    ids.push(...page.map(([id]) => id));
    if (page.length < 1000) return ids;
    start = `(${page[page.length - 1]![0]}`;
  }
}

/** Deletes the DLQ stream; returns how many dead letters it held. */
export async function purgeDeadLetters(redis: RedisClient, keys: AccountKeys): Promise<number> {
  const [[, length], [, deleted]] = (await redis.multi().xlen(keys.dlq).del(keys.dlq).exec()) as [[unknown, number], [unknown, number]];
  return deleted ? length : 0;
}
