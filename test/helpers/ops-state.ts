// Shared by the ops tests: a realistic Redis state (a stream with groups at different positions,
// pending entries with several owners and delivery counts, a DLQ, mailbox state, dedupe markers)
// and a snapshot of it that two states can be compared by.
import type { Cluster, Redis } from 'ioredis';
import { accountKeys, globalKeys } from '../../src/core/keys.ts';
import { ENTRY_VERSION, type EmailEntry } from '../../src/core/entry.ts';
import { pairs } from '../../src/core/stream-stats.ts';

export function sampleEntry(account: string, uid: number): EmailEntry {
  const date = new Date(Date.UTC(2026, 0, 1, 0, uid)).toISOString();
  return {
    v: ENTRY_VERSION, type: 'message.new', key: `msgid-${uid}@example.com`, keySource: 'message-id', account, mailbox: 'INBOX',
    uidValidity: '1700', uid, messageId: `<msgid-${uid}@example.com>`,
    envelope: { date, subject: `Message ${uid}`, from: [{ name: 'Sender', address: 'sender@example.com' }], to: [{ name: '', address: account }], cc: [], bcc: [], replyTo: [], inReplyTo: null },
    headers: { subject: `Message ${uid}` }, text: `Body ${uid}`, textTruncated: false, html: null, htmlTruncated: false,
    attachments: [], internalDate: date, flags: [], size: 100 + uid, ingestedAt: new Date().toISOString(),
  };
}

export interface FilledState { account: string; entryIds: string[]; acked: string[] }

/**
 * 30 entries; group `workers` read 12 of them as two consumers (4 acked, some claimed again so
 * delivery counts differ), group `audit` positioned in the middle, one acknowledged entry deleted.
 */
export async function fillState(redis: Redis | Cluster, prefix: string, account: string): Promise<FilledState> {
  const keys = accountKeys(prefix, account);
  const entryIds: string[] = [];
  for (let uid = 1; uid <= 30; uid++) {
    const entry = sampleEntry(account, uid);
    entryIds.push((await redis.xadd(keys.stream, '*', 'key', entry.key, 'email', JSON.stringify(entry)))!);
  }
  await redis.xgroup('CREATE', keys.stream, 'workers', '0');
  await redis.xgroup('CREATE', keys.stream, 'audit', entryIds[14]!);
  await redis.xreadgroup('GROUP', 'workers', 'old-worker-1', 'COUNT', 8, 'STREAMS', keys.stream, '>');
  await redis.xreadgroup('GROUP', 'workers', 'old-worker-2', 'COUNT', 4, 'STREAMS', keys.stream, '>');
  const acked = entryIds.slice(0, 4);
  await redis.xack(keys.stream, 'workers', ...acked);
  await (redis as Redis).xclaim(keys.stream, 'workers', 'old-worker-2', 0, entryIds[5]!, entryIds[6]!);
  await (redis as Redis).xclaim(keys.stream, 'workers', 'old-worker-2', 0, entryIds[6]!);
  await redis.xgroup('CREATECONSUMER', keys.stream, 'workers', 'idle-worker');
  for (const id of acked) {
    const entry = sampleEntry(account, entryIds.indexOf(id) + 1);
    await redis.set(keys.group('workers').delivered(entry.key), '1', 'EX', 3600);
  }
  // An acknowledged entry deleted: max-deleted-entry-id is set, yet the groups' lag stays known.
  await redis.xdel(keys.stream, acked[2]!);
  await redis.xadd(keys.dlq, '*', 'key', 'poison@example.com', 'email', '{"v":1}', 'error', 'sink said 400', 'attempts', '5');
  await redis.hset(keys.mailbox('INBOX'), { uidValidity: '1700', lastUid: '30', lastInternalDate: '2026-01-01T00:30:00.000Z', lastPollAt: String(Date.now()) });
  await redis.hset(keys.mailbox('Archive'), { uidValidity: '1701', lastUid: '0' });
  await redis.hset(keys.mailboxStatus, 'INBOX', JSON.stringify({ state: 'idle', connected: true }));
  await redis.zadd(keys.ingested, ...entryIds.flatMap((_, i) => [Date.UTC(2026, 0, 1, 0, i + 1), `msgid-${i + 1}@example.com`]));
  await redis.sadd(globalKeys(prefix).accounts, account);
  await redis.hset(globalKeys(prefix).processes, 'worker-gone', JSON.stringify({ id: 'worker-gone', role: 'worker', pid: 1, host: 'h', startedAt: '2026-01-01T00:00:00Z', heartbeatAt: '2026-01-01T00:00:00Z', intervalMs: 10_000 }));
  return { account, entryIds, acked };
}

/** Everything a restore must bring back, minus what moves with time (idle times, TTL values). */
export async function captureState(redis: Redis | Cluster, prefix: string, account: string) {
  const keys = accountKeys(prefix, account);
  const stream = async (key: string) => {
    const info = pairs(await redis.xinfo('STREAM', key));
    const groups = [];
    for (const raw of (await redis.xinfo('GROUPS', key)) as unknown[]) {
      const g = pairs(raw);
      const name = String(g.name);
      const consumers = ((await redis.xinfo('CONSUMERS', key, name)) as unknown[]).map((c) => String(pairs(c).name)).sort();
      const pending = ((await redis.xpending(key, name, '-', '+', 1000)) as [string, string, number, number][])
        .map(([id, consumer, , deliveries]) => ({ id, consumer, deliveries }));
      groups.push({ name, lastDeliveredId: g['last-delivered-id'], entriesRead: g['entries-read'], lag: g.lag, pending: g.pending, consumers, pendingEntries: pending });
    }
    return {
      entries: await redis.xrange(key, '-', '+'),
      lastGeneratedId: info['last-generated-id'], entriesAdded: info['entries-added'], maxDeletedId: info['max-deleted-entry-id'],
      groups,
    };
  };
  // Probed key by key rather than by pattern, so the same code reads a Redis Cluster.
  const candidates = Array.from({ length: 30 }, (_, i) => keys.group('workers').delivered(`msgid-${i + 1}@example.com`));
  const deliveredKeys = (await Promise.all(candidates.map(async (k) => ((await redis.exists(k)) ? k : null)))).filter((k): k is string => k !== null);
  return {
    stream: await stream(keys.stream),
    dlq: await stream(keys.dlq),
    inbox: await redis.hgetall(keys.mailbox('INBOX')),
    archive: await redis.hgetall(keys.mailbox('Archive')),
    mailboxStatus: await redis.hgetall(keys.mailboxStatus),
    ingested: await redis.zrange(keys.ingested, '0', '-1', 'WITHSCORES'),
    accounts: await redis.smembers(globalKeys(prefix).accounts),
    delivered: deliveredKeys,
    deliveredExpire: await Promise.all(deliveredKeys.map(async (k) => (await redis.pttl(k)) > 0)),
  };
}
