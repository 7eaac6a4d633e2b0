// The producer's Lua scripts against a private Redis: the atomic append (dedupe, lastUid,
// stale UIDVALIDITY, fencing), the rebase and the trimming floor.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { closeRedis, createRedis, type RedisClient } from '../../src/core/redis.ts';
import { accountKeys } from '../../src/core/keys.ts';
import { LeaseLostError, StaleUidValidityError } from '../../src/core/errors.ts';
import { createStreamAppender, rebaseMailbox, type PreparedEntry } from '../../src/producer/stream-append.ts';

let server: RedisServer;
let redis: RedisClient;
let n = 0;

beforeAll(async () => {
  server = await startRedisServer();
  redis = createRedis({ url: server.url, name: 'test' });
});

afterAll(async () => {
  await closeRedis(redis);
  await server?.destroy();
  expect(await killAllTracked()).toBe(0);
});

const entry = (uid: number, key = `k${uid}`): PreparedEntry => ({ uid, key, email: JSON.stringify({ uid }), internalDateMs: 1000 + uid, parseError: false });
const freshKeys = () => accountKeys(`unit${++n}`, 'a@example.com');

describe('appendBatch', () => {
  it('appends new keys once, advances lastUid and the last internal date', async () => {
    const keys = freshKeys();
    const appender = createStreamAppender(redis, keys, { retentionMs: 86_400_000 });
    const batch = { mailbox: 'INBOX', uidValidity: '5', lastUid: 3, entries: [entry(1), entry(2), entry(3)], fencingToken: '' };
    expect(await appender.append(batch)).toEqual({ appended: 3, skipped: 0 });
    expect(await appender.append(batch)).toEqual({ appended: 0, skipped: 3 });
    expect(await redis.xlen(keys.stream)).toBe(3);
    expect(await redis.hgetall(keys.mailbox('INBOX'))).toMatchObject({ uidValidity: '5', lastUid: '3', lastInternalDate: '1003' });
    // lastUid never moves back.
    await appender.append({ ...batch, lastUid: 1, entries: [] });
    expect(await redis.hget(keys.mailbox('INBOX'), 'lastUid')).toBe('3');
  });

  it('refuses a stale UIDVALIDITY and a lost lease, writing nothing', async () => {
    const keys = freshKeys();
    const appender = createStreamAppender(redis, keys, { retentionMs: 86_400_000 });
    await appender.append({ mailbox: 'INBOX', uidValidity: '5', lastUid: 1, entries: [entry(1)], fencingToken: '' });
    await expect(appender.append({ mailbox: 'INBOX', uidValidity: '6', lastUid: 2, entries: [entry(2)], fencingToken: '' })).rejects.toBeInstanceOf(StaleUidValidityError);
    await redis.set(keys.lease('INBOX'), '7:other');
    await expect(appender.append({ mailbox: 'INBOX', uidValidity: '5', lastUid: 2, entries: [entry(2)], fencingToken: '6:me' })).rejects.toBeInstanceOf(LeaseLostError);
    expect(await appender.append({ mailbox: 'INBOX', uidValidity: '5', lastUid: 2, entries: [entry(2)], fencingToken: '7:other' })).toEqual({ appended: 1, skipped: 0 });
    expect(await redis.xlen(keys.stream)).toBe(2);
  });

  it('forgets ingested keys past the retention', async () => {
    const keys = freshKeys();
    await redis.zadd(keys.ingested, String(Date.now() - 10_000), 'old');
    const appender = createStreamAppender(redis, keys, { retentionMs: 5_000 });
    await appender.append({ mailbox: 'INBOX', uidValidity: '1', lastUid: 1, entries: [entry(1)], fencingToken: '' });
    expect(await redis.zrange(keys.ingested, '0', '-1')).toEqual(['k1']);
  });
});

describe('rebaseMailbox', () => {
  it('moves the position only from the expected UIDVALIDITY, and clears the reset it answers', async () => {
    const keys = freshKeys();
    await rebaseMailbox(redis, keys, 'INBOX', { fencingToken: '', expectedUidValidity: null, uidValidity: '5', lastUid: 10 });
    await expect(rebaseMailbox(redis, keys, 'INBOX', { fencingToken: '', expectedUidValidity: null, uidValidity: '5', lastUid: 0 })).rejects.toBeInstanceOf(StaleUidValidityError);
    await redis.hset(keys.mailbox('INBOX'), 'resetSince', '123');
    await rebaseMailbox(redis, keys, 'INBOX', { fencingToken: '', expectedUidValidity: '5', uidValidity: '9', lastUid: 2, resetSince: '123' });
    expect(await redis.hgetall(keys.mailbox('INBOX'))).toEqual({ uidValidity: '9', lastUid: '2' });
  });
});

describe('trimStream', () => {
  it('trims only what every group acknowledged, down to maxLen', async () => {
    const keys = freshKeys();
    for (let i = 0; i < 10; i++) await redis.xadd(keys.stream, '*', 'key', `k${i}`);
    expect(await redis.trimStream(keys.stream, 4, 1000)).toEqual([0, 10]); // no groups: never trimmed
    await redis.xgroup('CREATE', keys.stream, 'a', '0');
    await redis.xgroup('CREATE', keys.stream, 'b', '0');
    const readA = (await redis.xreadgroup('GROUP', 'a', 'c', 'COUNT', 10, 'STREAMS', keys.stream, '>')) as Array<[string, Array<[string, string[]]>]>;
    await redis.xack(keys.stream, 'a', ...readA[0]![1].map(([id]) => id));
    const readB = (await redis.xreadgroup('GROUP', 'b', 'c', 'COUNT', 5, 'STREAMS', keys.stream, '>')) as Array<[string, Array<[string, string[]]>]>;
    const idsB = readB[0]![1].map(([id]) => id);
    await redis.xack(keys.stream, 'b', ...idsB.slice(0, 3));
    // b acknowledged 3 and holds 2 pending: only the first 3 may go, although maxLen asks for 6.
    expect(await redis.trimStream(keys.stream, 4, 1000)).toEqual([3, 7]);
    await redis.xack(keys.stream, 'b', ...idsB.slice(3));
    expect(await redis.trimStream(keys.stream, 4, 1000)).toEqual([2, 5]);
  });
});
