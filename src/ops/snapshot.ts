// The physical half of a backup: ask Redis for a fresh RDB (BGSAVE) and copy it next to the
// logical export. Only possible when the RDB file is on this machine and readable; otherwise the
// reason is reported and the logical export still stands on its own.
import { constants } from 'node:fs';
import { access, chmod, copyFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { Cluster } from 'ioredis';
import { sleep } from '../core/backoff.ts';
import type { RedisClient } from '../core/redis.ts';

/**
 * `failed`: the copy was possible here and went wrong (BGSAVE error, unreadable file, disk full),
 * which the command reports with exit code 1; otherwise it was not possible from this host.
 */
export type SnapshotResult = { copied: true; file: string; source: string } | { copied: false; reason: string; failed: boolean };

const POLL_MS = 200;
/** A save of a large dataset takes minutes; past this the backup reports it and goes on without. */
const SAVE_DEADLINE_MS = 30 * 60_000;
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

function info(text: string, field: string): string | undefined {
  return new RegExp(`^${field}:(.*)$`, 'm').exec(text)?.[1]?.trim();
}

/** Waits until no RDB save or AOF rewrite runs (both fork, and BGSAVE refuses to start meanwhile). */
async function waitForIdle(redis: RedisClient, deadline: number): Promise<string> {
  for (;;) {
    const text = await redis.info('persistence');
    if (info(text, 'rdb_bgsave_in_progress') === '0' && info(text, 'aof_rewrite_in_progress') === '0') return text;
    if (Date.now() > deadline) throw new Error(`a save or AOF rewrite still runs after ${SAVE_DEADLINE_MS / 60_000} minutes`);
    await sleep(POLL_MS);
  }
}

async function bgsave(redis: RedisClient): Promise<void> {
  const deadline = Date.now() + SAVE_DEADLINE_MS;
  for (let attempt = 0; ; attempt++) {
    await waitForIdle(redis, deadline);
    try {
      await redis.bgsave();
      break;
    } catch (err) {
      // Another save or rewrite started between our check and our call: wait for it and retry.
      if (attempt >= 5 || !/in progress/i.test((err as Error).message)) throw err;
    }
  }
  // Redis forks before it answers, and notices the child's end only later: waiting for
  // "not in progress" therefore waits for our own save.
  const done = await waitForIdle(redis, deadline);
  if (info(done, 'rdb_last_bgsave_status') !== 'ok') throw new Error('BGSAVE failed: see the Redis log (disk full? permissions of its dir?)');
}

export async function snapshotRdb(redis: RedisClient, redisUrl: string, target: string): Promise<SnapshotResult> {
  if (redis instanceof Cluster) return { copied: false, reason: 'Redis Cluster: snapshot each node on its host (runbooks/redis-operations.md)', failed: false };
  const host = new URL(redisUrl).hostname;
  if (!LOOPBACK.has(host) && !host.startsWith('127.')) return { copied: false, reason: `Redis runs on ${host}, not on this machine: its RDB has to be copied there (runbooks/redis-operations.md)`, failed: false };
  let dir: string;
  let dbfilename: string;
  try {
    const [, dirValue] = (await redis.config('GET', 'dir')) as string[];
    const [, fileValue] = (await redis.config('GET', 'dbfilename')) as string[];
    dir = dirValue ?? '';
    dbfilename = fileValue ?? '';
  } catch (err) {
    return { copied: false, reason: `CONFIG GET refused (${(err as Error).message}): managed Redis? use its own snapshots`, failed: false };
  }
  const source = isAbsolute(dbfilename) ? dbfilename : join(dir, dbfilename);
  try {
    await bgsave(redis);
  } catch (err) {
    return { copied: false, reason: `BGSAVE: ${(err as Error).message}`, failed: true };
  }
  try {
    await access(source, constants.R_OK);
  } catch {
    return { copied: false, reason: `${source} is not readable by this user (run the backup as the redis user or root)`, failed: true };
  }
  // Redis writes a temporary file and renames it, so the copy sees one complete RDB.
  try {
    await copyFile(source, target);
    await chmod(target, 0o600);
  } catch (err) {
    return { copied: false, reason: `copy to ${target} failed: ${(err as Error).message}`, failed: true };
  }
  return { copied: true, file: target, source };
}
