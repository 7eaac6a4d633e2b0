// Logical export of every key under the prefix to one gzip'd JSON-lines file. Streams keep their
// entry IDs, their consumer groups' positions and each group's pending entries (owner, idle time,
// delivery count); other keys keep their values and remaining TTL.
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { MailstreamError } from '../core/errors.ts';
import { redisVersion, type RedisClient } from '../core/redis.ts';
import { pairs } from '../core/stream-stats.ts';
import { BACKUP_FORMAT, BACKUP_VERSION, type BodyRecord, type GroupRecord, type HeaderRecord, type KeyRecord, type StreamRecord } from './backup-format.ts';
import { isEphemeralKey } from './ephemeral.ts';
import { globEscape, scanKeys } from './scan.ts';

const ENTRY_CHUNK = 500;
const PENDING_CHUNK = 1000;
const KEY_BATCH = 500;

export interface ExportSummary {
  file: string;
  keys: number;
  streams: number;
  streamEntries: number;
  pendingEntries: number;
  skipped: string[];
}

/** A line writer on a gzip stream that respects backpressure and fails on a write error (disk full). */
function lineWriter(path: string) {
  const gzip = createGzip();
  const done = pipeline(gzip, createWriteStream(path, { mode: 0o600 })).catch((err: Error) => {
    throw new MailstreamError('ERR_BACKUP_WRITE', `cannot write ${path}: ${err.message}`, { cause: err });
  });
  done.catch(() => undefined); // awaited by write() and close()
  return {
    async write(record: HeaderRecord | BodyRecord): Promise<void> {
      if (!gzip.write(`${JSON.stringify(record)}\n`)) await Promise.race([once(gzip, 'drain'), done]);
    },
    async close(): Promise<void> {
      gzip.end();
      await done;
    },
  };
}

async function ttlOf(redis: RedisClient, key: string): Promise<number | null> {
  const ms = await redis.pttl(key);
  return ms > 0 ? ms : null;
}

async function readPending(redis: RedisClient, key: string, group: string): Promise<GroupRecord['pending']> {
  const out: GroupRecord['pending'] = [];
  let start = '-';
  for (;;) {
    const rows = (await redis.xpending(key, group, start, '+', PENDING_CHUNK)) as [string, string, number, number][];
    for (const [id, consumer, idleMs, deliveries] of rows) out.push({ id, consumer, idleMs: Number(idleMs), deliveries: Number(deliveries) });
    if (rows.length < PENDING_CHUNK) return out;
    start = `(${rows[rows.length - 1]![0]}`;
  }
}

/** Groups are read before the entries, so every group position lies within what is exported. */
async function readGroups(redis: RedisClient, key: string): Promise<GroupRecord[]> {
  const groups: GroupRecord[] = [];
  for (const raw of (await redis.xinfo('GROUPS', key)) as unknown[]) {
    const g = pairs(raw);
    const name = String(g.name);
    const consumers = ((await redis.xinfo('CONSUMERS', key, name)) as unknown[]).map((c) => String(pairs(c).name));
    const entriesRead = g['entries-read'];
    groups.push({
      name,
      lastDeliveredId: String(g['last-delivered-id']),
      entriesRead: entriesRead === null || entriesRead === undefined ? null : Number(entriesRead),
      consumers,
      pending: await readPending(redis, key, name),
    });
  }
  return groups;
}

async function exportStream(redis: RedisClient, key: string, write: (r: BodyRecord) => Promise<void>): Promise<{ entries: number; pending: number }> {
  const groups = await readGroups(redis, key);
  const info = pairs(await redis.xinfo('STREAM', key));
  const lastGeneratedId = String(info['last-generated-id']);
  const added = info['entries-added'];
  const maxDeleted = info['max-deleted-entry-id'];
  const record: StreamRecord = {
    t: 'stream', key, ttlMs: await ttlOf(redis, key), lastGeneratedId,
    entriesAdded: added === undefined || added === null ? null : Number(added),
    maxDeletedId: maxDeleted === undefined || maxDeleted === null ? null : String(maxDeleted),
    length: Number(info.length), groups,
  };
  await write(record);
  let entries = 0;
  let start = '-';
  for (;;) {
    // Bounded by the ID read above: entries appended meanwhile belong to the next backup.
    const chunk = await redis.xrange(key, start, lastGeneratedId, 'COUNT', ENTRY_CHUNK);
    if (chunk.length === 0) break;
    await write({ t: 'entries', key, entries: chunk });
    entries += chunk.length;
    if (chunk.length < ENTRY_CHUNK) break;
    start = `(${chunk[chunk.length - 1]![0]}`;
  }
  return { entries, pending: groups.reduce((n, g) => n + g.pending.length, 0) };
}

/** The key's record; 'gone' when it expired meanwhile; undefined for a type we do not export. */
async function readPlainKey(redis: RedisClient, key: string, type: string): Promise<KeyRecord | 'gone' | undefined> {
  const ttlMs = await ttlOf(redis, key);
  switch (type) {
    case 'string': {
      const value = await redis.get(key);
      return value === null ? 'gone' : { t: 'string', key, ttlMs, value };
    }
    case 'hash': return { t: 'hash', key, ttlMs, value: await redis.hgetall(key) };
    case 'set': return { t: 'set', key, ttlMs, value: (await redis.smembers(key)).sort() };
    case 'list': return { t: 'list', key, ttlMs, value: await redis.lrange(key, 0, -1) };
    case 'zset': {
      const flat = await redis.zrange(key, '0', '-1', 'WITHSCORES');
      const value: [string, string][] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) value.push([flat[i]!, flat[i + 1]!]);
      return { t: 'zset', key, ttlMs, value };
    }
    default: return undefined;
  }
}

/** Writes to `<file>.partial` and renames at the end: a file with the final name is complete. */
export async function exportLogical(redis: RedisClient, prefix: string, file: string): Promise<ExportSummary> {
  const [major, minor, patch] = await redisVersion(redis);
  const partial = `${file}.partial`;
  const writer = lineWriter(partial);
  const summary: ExportSummary = { file, keys: 0, streams: 0, streamEntries: 0, pendingEntries: 0, skipped: [] };
  try {
    await writer.write({ t: 'header', format: BACKUP_FORMAT, version: BACKUP_VERSION, prefix, createdAt: new Date().toISOString(), redisVersion: `${major}.${minor}.${patch}` });
    const keys = (await scanKeys(redis, `${globEscape(prefix)}:*`)).filter((k) => !isEphemeralKey(prefix, k));
    for (let i = 0; i < keys.length; i += KEY_BATCH) {
      // Dedupe markers can number in the millions: read a batch of small keys at once (one
      // auto-pipelined round trip), streams one by one.
      const batch = keys.slice(i, i + KEY_BATCH);
      const types = await Promise.all(batch.map((k) => redis.type(k)));
      const plain = await Promise.all(batch.map((k, j) => (types[j] === 'stream' || types[j] === 'none' ? undefined : readPlainKey(redis, k, types[j]!))));
      for (const [j, key] of batch.entries()) {
        const type = types[j]!;
        if (type === 'none') continue; // expired or deleted since the scan
        if (type === 'stream') {
          const { entries, pending } = await exportStream(redis, key, (r) => writer.write(r));
          summary.streams += 1;
          summary.streamEntries += entries;
          summary.pendingEntries += pending;
        } else {
          const record = plain[j];
          if (record === 'gone') continue;
          if (!record) { summary.skipped.push(`${key} (${type})`); continue; }
          await writer.write(record);
        }
        summary.keys += 1;
      }
    }
    await writer.write({ t: 'end', keys: summary.keys, streamEntries: summary.streamEntries });
  } catch (err) {
    await writer.close().catch(() => undefined);
    await rm(partial, { force: true });
    throw err;
  }
  await writer.close();
  await rename(partial, file);
  return summary;
}
