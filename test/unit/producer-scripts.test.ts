// The producer's Lua scripts against a private Redis: the atomic append (dedupe, lastUid,
// stale UIDVALIDITY, fencing), the rebase and the trimming floor.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { closeRedis, createRedis, type RedisClient } from '../../src/core/redis.ts';
import { accountKeys } from '../../src/core/keys.ts';
import { LeaseLostError, StaleUidValidityError } from '../../src/core/errors.ts';
import { appendChanges, createStreamAppender, rebaseMailbox, type PreparedEntry } from '../../src/producer/stream-append.ts';
import { deletedEvent, updatedEvent } from '../../src/producer/change-events.ts';

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

const entry = (uid: number, key = `k${uid}`): PreparedEntry => ({ uid, key, email: JSON.stringify({ uid }), internalDateMs: 1000 + uid, parseError: false, flags: [] });
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

describe('appendBatch with change tracking', () => {
  const tracked = (entries: PreparedEntry[], lastUid: number, mailbox = 'INBOX', announceMoves = true, modseqFloor: string | null = '40') =>
    ({ mailbox, uidValidity: '5', lastUid, entries, fencingToken: '', tracking: { announceMoves, modseqFloor } });

  it('records each UID and starts the MODSEQ cursor with the first batch only', async () => {
    const keys = freshKeys();
    const appender = createStreamAppender(redis, keys, { retentionMs: 86_400_000 });
    await appender.append(tracked([{ ...entry(1), flags: ['\\Seen', '\\Recent'] }, entry(2)], 2));
    expect(await redis.hgetall(keys.uids('INBOX'))).toEqual({ 1: JSON.stringify({ k: 'k1', f: ['\\Seen'] }), 2: JSON.stringify({ k: 'k2', f: [] }) });
    await appender.append(tracked([entry(3)], 3, 'INBOX', true, '90'));
    expect(await redis.hget(keys.mailbox('INBOX'), 'highestModseq')).toBe('40');
    const types = (await redis.xrange(keys.stream, '-', '+')).map(([, f]) => f[5]);
    expect(types).toEqual(['message.new', 'message.new', 'message.new']);
  });

  it('announces a known key at a new UID once (message.moved), and never on Gmail', async () => {
    const keys = freshKeys();
    const appender = createStreamAppender(redis, keys, { retentionMs: 86_400_000 });
    await appender.append(tracked([entry(1, 'm1'), entry(2, 'm2')], 2));
    expect(await appender.append(tracked([entry(7, 'm1')], 7, 'Archive'))).toEqual({ appended: 0, skipped: 0, moved: 1 });
    // The same batch again (a command sent twice, a re-sync): nothing new.
    expect(await appender.append(tracked([entry(7, 'm1')], 7, 'Archive'))).toEqual({ appended: 0, skipped: 1 });
    expect(await appender.append(tracked([entry(8, 'm2')], 8, 'All Mail', false))).toEqual({ appended: 0, skipped: 1 });
    const entries = await redis.xrange(keys.stream, '-', '+');
    expect(entries).toHaveLength(3);
    const [, fields] = entries[2]!;
    expect(fields[1]).toBe('m1#moved#Archive:5:7');
    expect(fields[5]).toBe('message.moved');
    expect(JSON.parse(fields[3]!)).toMatchObject({ type: 'message.moved', messageKey: 'm1', mailbox: 'Archive', uidValidity: '5', uid: 7 });
    expect(await redis.hget(keys.uids('All Mail'), '8')).toBe(JSON.stringify({ k: 'm2', f: [] }));
  });
});

describe('appendChanges', () => {
  const at = (uid: number) => ({ account: 'a@example.com', mailbox: 'INBOX', uidValidity: '5', uid });
  const now = '2026-01-01T00:00:00.000Z';

  it('appends the events with the new cursor, once, and refuses a cursor that moved', async () => {
    const keys = freshKeys();
    const appender = createStreamAppender(redis, keys, { retentionMs: 86_400_000 });
    await appender.append({ mailbox: 'INBOX', uidValidity: '5', lastUid: 2, entries: [entry(1), entry(2)], fencingToken: '', tracking: { announceMoves: true, modseqFloor: '10' } });
    const seen = { key: 'k1', flags: ['\\Flagged'], labels: null };
    const batch = {
      mailbox: 'INBOX', uidValidity: '5', fencingToken: '', cursor: { field: 'highestModseq' as const, expected: '10', next: '14' },
      changes: [
        { uid: 1, record: JSON.stringify({ k: 'k1', f: ['\\Flagged'] }), event: updatedEvent(at(1), seen, { modseq: '12' }, now) },
        { uid: 2, record: null, event: deletedEvent(at(2), 'k2', now) },
      ],
    };
    expect(await appendChanges(redis, keys, batch)).toEqual({ applied: true, appended: 2, skipped: 0 });
    // Sent again (a reply lost on the way): the cursor moved, nothing happens.
    expect(await appendChanges(redis, keys, batch)).toEqual({ applied: false, appended: 0, skipped: 0 });
    expect(await redis.hget(keys.mailbox('INBOX'), 'highestModseq')).toBe('14');
    expect(await redis.hgetall(keys.uids('INBOX'))).toEqual({ 1: JSON.stringify({ k: 'k1', f: ['\\Flagged'] }) });
    const entries = await redis.xrange(keys.stream, '-', '+');
    expect(entries.slice(2).map(([, f]) => [f[1], f[5]])).toEqual([['k1#updated#INBOX:5:1:m12', 'message.updated'], ['k2#deleted#INBOX:5:2', 'message.deleted']]);
    // The same events at a later cursor (reported again by the server) are not appended twice.
    expect(await appendChanges(redis, keys, { ...batch, cursor: { field: 'highestModseq', expected: '14', next: '15' } })).toEqual({ applied: true, appended: 0, skipped: 2 });
  });

  it('refuses a stale UIDVALIDITY and a lost lease', async () => {
    const keys = freshKeys();
    await rebaseMailbox(redis, keys, 'INBOX', { fencingToken: '', expectedUidValidity: null, uidValidity: '6', lastUid: 0 });
    const batch = { mailbox: 'INBOX', uidValidity: '5', fencingToken: '', cursor: { field: 'scanSeq' as const, expected: null, next: '1' }, changes: [] };
    await expect(appendChanges(redis, keys, batch)).rejects.toBeInstanceOf(StaleUidValidityError);
    await redis.set(keys.lease('INBOX'), '3:other');
    await expect(appendChanges(redis, keys, { ...batch, uidValidity: '6', fencingToken: '2:me' })).rejects.toBeInstanceOf(LeaseLostError);
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

  it('forgets change tracking of the old UIDs on a new UIDVALIDITY, and records a filtered backfill', async () => {
    const keys = freshKeys();
    await rebaseMailbox(redis, keys, 'INBOX', { fencingToken: '', expectedUidValidity: null, uidValidity: '5', lastUid: 0, filterUntil: 30 });
    expect(await redis.hget(keys.mailbox('INBOX'), 'filterUntil')).toBe('30');
    await redis.hset(keys.uids('INBOX'), '1', '{}');
    await redis.hset(keys.mailbox('INBOX'), 'highestModseq', '77', 'scanSeq', '3');
    await rebaseMailbox(redis, keys, 'INBOX', { fencingToken: '', expectedUidValidity: '5', uidValidity: '8', lastUid: 4 });
    expect(await redis.exists(keys.uids('INBOX'))).toBe(0);
    expect(await redis.hgetall(keys.mailbox('INBOX'))).toEqual({ uidValidity: '8', lastUid: '4' });
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
