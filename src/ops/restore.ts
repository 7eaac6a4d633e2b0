// `mailstream restore`: puts a logical backup back. Streams get their entries with the same IDs
// (XADD with explicit IDs), their counters (XSETID), their groups at the same positions (XGROUP
// CREATE ... ENTRIESREAD) and each pending entry back with its owner, idle time and delivery
// count (XCLAIM ... FORCE RETRYCOUNT JUSTID creates the PEL entry as it was), so workers claim
// and retry exactly what was in flight when the backup was taken.
import { MailstreamError } from '../core/errors.ts';
import { redisVersion, type RedisClient } from '../core/redis.ts';
import type { KeyRecord, StreamRecord } from './backup-format.ts';
import { inspectBackup, readBackup, type BackupContents } from './backup-reader.ts';
import { isEphemeralKey } from './ephemeral.ts';
import { globEscape, scanKeys } from './scan.ts';

const MEMBER_CHUNK = 1000;
const KEY_BATCH = 500;

export class RestoreRefusedError extends MailstreamError {
  constructor(message: string) {
    super('ERR_RESTORE_REFUSED', message);
  }
}

export interface RestoreOptions {
  redis: RedisClient;
  file: string;
  /** Target prefix; keys are moved from the backup's prefix to this one. */
  prefix: string;
  dryRun?: boolean;
  force?: boolean;
  /** The file's validation, when the caller did it already (before connecting to Redis). */
  contents?: BackupContents;
}

export interface RestoreReport {
  contents: BackupContents;
  fromPrefix: string;
  toPrefix: string;
  /** Keys under the target prefix before the restore (heartbeats and leases not counted). */
  existingKeys: number;
  dryRun: boolean;
  restoredKeys: number;
  restoredEntries: number;
  restoredPending: number;
  /** Pending entries whose stream entry was gone already when the backup was taken. */
  pendingWithoutEntry: number;
}

async function existingKeys(redis: RedisClient, prefix: string): Promise<number> {
  return (await scanKeys(redis, `${globEscape(prefix)}:*`)).filter((k) => !isEphemeralKey(prefix, k)).length;
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

async function restorePlain(redis: RedisClient, key: string, record: Exclude<KeyRecord, StreamRecord>): Promise<void> {
  switch (record.t) {
    case 'string': await redis.set(key, record.value); break;
    case 'hash': if (Object.keys(record.value).length > 0) await redis.hset(key, record.value); break;
    case 'set': for (const part of chunks(record.value, MEMBER_CHUNK)) await redis.sadd(key, ...part); break;
    case 'list': for (const part of chunks(record.value, MEMBER_CHUNK)) await redis.rpush(key, ...part); break;
    case 'zset':
      for (const part of chunks(record.value, MEMBER_CHUNK)) await redis.zadd(key, ...part.flatMap(([member, score]) => [score, member]));
      break;
  }
  if (record.ttlMs) await redis.pexpire(key, record.ttlMs);
}

/** After all entries are in: counters, groups, consumers, pending entries, TTL. */
async function finishStream(redis: RedisClient, key: string, record: StreamRecord, entriesRestored: number, modern: boolean): Promise<{ pending: number; lost: number }> {
  if (entriesRestored === 0) {
    // An empty stream (all entries trimmed) still carries groups and counters: create it bare.
    await redis.xgroup('CREATE', key, 'mailstream-restore', '$', 'MKSTREAM');
    await redis.xgroup('DESTROY', key, 'mailstream-restore');
  }
  if (modern && record.entriesAdded !== null) {
    const args: (string | number)[] = [key, record.lastGeneratedId, 'ENTRIESADDED', record.entriesAdded];
    if (record.maxDeletedId) args.push('MAXDELETEDID', record.maxDeletedId);
    await redis.call('XSETID', args);
  } else {
    await redis.call('XSETID', [key, record.lastGeneratedId]);
  }
  let pending = 0;
  let lost = 0;
  for (const group of record.groups) {
    const create: (string | number)[] = ['CREATE', key, group.name, group.lastDeliveredId];
    if (modern && group.entriesRead !== null) create.push('ENTRIESREAD', group.entriesRead);
    await redis.call('XGROUP', create);
    for (const consumer of group.consumers) await redis.call('XGROUP', ['CREATECONSUMER', key, group.name, consumer]);
    for (const part of chunks(group.pending, KEY_BATCH)) {
      const claimed = await Promise.all(part.map((entry) => redis.call('XCLAIM', [
        key, group.name, entry.consumer, 0, entry.id, 'IDLE', entry.idleMs, 'RETRYCOUNT', entry.deliveries, 'FORCE', 'JUSTID',
      ]) as Promise<string[]>));
      for (const ids of claimed) if (ids.length === 1) pending += 1; else lost += 1;
    }
  }
  if (record.ttlMs) await redis.pexpire(key, record.ttlMs);
  return { pending, lost };
}

export async function runRestore(options: RestoreOptions): Promise<RestoreReport> {
  const contents = options.contents ?? await inspectBackup(options.file);
  const fromPrefix = contents.header.prefix;
  const { redis, prefix: toPrefix } = options;
  const mapKey = (key: string) => `${toPrefix}${key.slice(fromPrefix.length)}`;
  const report: RestoreReport = {
    contents, fromPrefix, toPrefix, existingKeys: await existingKeys(redis, toPrefix), dryRun: Boolean(options.dryRun),
    restoredKeys: 0, restoredEntries: 0, restoredPending: 0, pendingWithoutEntry: 0,
  };
  if (options.dryRun) return report;
  if (report.existingKeys > 0 && !options.force) {
    throw new RestoreRefusedError(`Redis already holds ${report.existingKeys} keys under ${toPrefix}: — stop the producers and workers, then restore with --force to replace the keys in the backup (other keys stay), or restore into an empty Redis`);
  }
  const [major] = await redisVersion(redis);
  const modern = major >= 7; // ENTRIESREAD, ENTRIESADDED and MAXDELETEDID arrived in Redis 7.0
  const streams = new Map<string, { record: StreamRecord; entries: number }>();
  const inFlight: Promise<void>[] = [];
  for await (const record of readBackup(options.file)) {
    if (record.t === 'header' || record.t === 'end') continue;
    const key = mapKey(record.key);
    if (record.t === 'entries') {
      // Auto-pipelined: one round trip per chunk, IDs given explicitly so they stay the same.
      await Promise.all(record.entries.map(([id, fields]) => redis.xadd(key, id, ...fields)));
      streams.get(key)!.entries += record.entries.length;
      report.restoredEntries += record.entries.length;
      continue;
    }
    report.restoredKeys += 1;
    if (record.t === 'stream') {
      if (options.force) await redis.del(key);
      streams.set(key, { record, entries: 0 });
      continue;
    }
    // Small keys (dedupe markers can number in the millions) go in batches: the commands of one
    // key still reach Redis in order, distinct keys need no order.
    const restoring = (async () => {
      if (options.force) await redis.del(key);
      await restorePlain(redis, key, record);
    })();
    restoring.catch(() => undefined); // reported by the Promise.all below, not as unhandled
    inFlight.push(restoring);
    if (inFlight.length >= KEY_BATCH) await Promise.all(inFlight.splice(0));
  }
  await Promise.all(inFlight);
  for (const [key, stream] of streams) {
    const { pending, lost } = await finishStream(redis, key, stream.record, stream.entries, modern);
    report.restoredPending += pending;
    report.pendingWithoutEntry += lost;
  }
  return report;
}
