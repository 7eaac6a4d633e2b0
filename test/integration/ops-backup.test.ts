// Backup and restore through the CLI against a private Redis: the round trip brings back streams
// with the same IDs and counters, groups at the same positions with the same pending entries
// (owner and delivery count), mailbox state and dedupe markers with their TTL.
import { mkdtempSync, readdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startDaemon } from '../helpers/cli.ts';
import { eventually, freePort } from '../helpers/ports.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { startRedisServer } from '../helpers/redis-server.ts';
import { startTestRedis, type TestRedis } from '../helpers/test-redis.ts';
import { captureState, fillState, type FilledState } from '../helpers/ops-state.ts';
import { snapshotRdb } from '../../src/ops/snapshot.ts';

const PREFIX = 'msbk';
const ACCOUNT = 'alice@example.com';
let server: TestRedis;
let redis: Redis;
let dir: string;
let env: Record<string, string>;

beforeAll(async () => {
  server = await startTestRedis();
  redis = server.client();
  dir = mkdtempSync(join(tmpdir(), 'ms-backup-'));
  env = { REDIS_URL: server.url, MAILSTREAM_PREFIX: PREFIX };
});

afterAll(async () => {
  redis?.disconnect();
  await server?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
  expect(await killAllTracked()).toBe(0);
});

function exportsIn(folder: string): string[] {
  return readdirSync(folder).filter((f) => f.startsWith(`mailstream-${PREFIX}-`)).sort();
}

describe('mailstream backup / restore', () => {
  let before: Awaited<ReturnType<typeof captureState>>;
  let file: string;
  let filled: FilledState;

  it('writes a logical export and an RDB copy, and prunes beyond --keep', async () => {
    filled = await fillState(redis, PREFIX, ACCOUNT);
    before = await captureState(redis, PREFIX, ACCOUNT);
    expect(before.stream.groups.find((g) => g.name === 'workers')?.pending).toBe(8);

    const out = join(dir, 'backups');
    // Older backups of this prefix (and one of another prefix, which must stay).
    const { mkdirSync } = await import('node:fs');
    mkdirSync(out);
    for (const name of ['mailstream-msbk-20200101T000000Z.jsonl.gz', 'mailstream-msbk-20200102T000000Z.jsonl.gz', 'redis-20200101T000000Z.rdb', 'mailstream-other-20200101T000000Z.jsonl.gz']) {
      writeFileSync(join(out, name), '');
    }
    const result = await runCli(['backup', '--out', out, '--keep', '2'], env);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    // A cluster has one RDB per node, on each node's host: the backup says so and copies none.
    const cluster = server.kind === 'cluster';
    expect(result.stdout).toMatch(cluster ? /RDB snapshot: not copied: Redis Cluster/ : /RDB snapshot: .*redis-\d{8}T\d{9}Z\.rdb/);
    const files = readdirSync(out).sort();
    expect(files.filter((f) => f.startsWith('mailstream-msbk-'))).toHaveLength(2);
    expect(files).not.toContain('mailstream-msbk-20200101T000000Z.jsonl.gz');
    expect(files).toContain('mailstream-other-20200101T000000Z.jsonl.gz');
    expect(files.filter((f) => f.endsWith('.rdb'))).toHaveLength(cluster ? 1 : 2);
    const rdb = files.find((f) => f.endsWith('.rdb') && !f.includes('2020'));
    if (!cluster) expect(readFileSync(join(out, rdb!)).subarray(0, 5).toString()).toBe('REDIS');
    file = join(out, exportsIn(out).at(-1)!);
    const lines = gunzipSync(readFileSync(file)).toString().trim().split('\n').map((l) => JSON.parse(l) as { t: string; key?: string });
    expect(lines[0]).toMatchObject({ t: 'header', format: 'mailstream-backup', prefix: PREFIX });
    expect(lines.at(-1)).toMatchObject({ t: 'end', streamEntries: 29 + 1 });
    // Heartbeats describe processes, not data: they are not part of a backup.
    expect(lines.some((l) => l.key === `${PREFIX}:processes`)).toBe(false);
  });

  it('does not try to copy the RDB of a Redis on another host, and says why', async () => {
    const result = await snapshotRdb(redis, 'redis://redis.internal.example:6379', join(dir, 'never.rdb'));
    if (server.kind === 'cluster') expect(result).toMatchObject({ copied: false, reason: expect.stringMatching(/^Redis Cluster/) });
    else expect(result).toEqual({ copied: false, failed: false, reason: expect.stringMatching(/^Redis runs on redis\.internal\.example, not on this machine/) });
    const logical = await runCli(['backup', '--out', join(dir, 'logical'), '--logical-only'], env);
    expect(logical.code).toBe(0);
    expect(logical.stdout).toMatch(/RDB snapshot: not copied: skipped \(--logical-only\)/);
    expect(readdirSync(join(dir, 'logical')).filter((f) => f.endsWith('.rdb'))).toEqual([]);
  });

  it('exits 1 when the RDB snapshot fails on this host, the logical export still written', async () => {
    // A Redis whose data dir disappeared: BGSAVE cannot create its file.
    const gone = mkdtempSync(join(tmpdir(), 'ms-rdb-gone-'));
    const broken = await startRedisServer({ extraArgs: ['--dir', gone] });
    try {
      rmSync(gone, { recursive: true });
      const out = join(dir, 'failing');
      const result = await runCli(['backup', '--out', out], { REDIS_URL: broken.url, MAILSTREAM_PREFIX: PREFIX });
      expect(result.stdout).toMatch(/RDB snapshot: not copied: BGSAVE: BGSAVE failed/);
      expect(result.code).toBe(1);
      expect(readdirSync(out).filter((f) => f.endsWith('.jsonl.gz'))).toHaveLength(1);
    } finally {
      await broken.destroy();
    }
  });

  it('refuses a Redis that holds keys under the prefix, unless --force; --dry-run changes nothing', async () => {
    const refused = await runCli(['restore', file], env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/already holds \d+ keys under msbk.*--force/);

    const dry = await runCli(['restore', file, '--dry-run'], env);
    expect(dry.stderr).toBe('');
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/valid/);
    expect(dry.stdout).toMatch(/needs --force/);
  });

  it('rejects a truncated or foreign file before writing anything', async () => {
    await redis.flushall();
    const text = gunzipSync(readFileSync(file)).toString().trim().split('\n');
    const truncated = join(dir, 'truncated.jsonl.gz');
    writeFileSync(truncated, gzipSync(text.slice(0, -1).join('\n')));
    const result = await runCli(['restore', truncated], env);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/truncated/);

    const foreign = join(dir, 'foreign.jsonl.gz');
    writeFileSync(foreign, gzipSync('{"hello":"world"}\n'));
    const bad = await runCli(['restore', foreign, '--dry-run'], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/not a mailstream backup/);

    const missing = await runCli(['restore', join(dir, 'missing.jsonl.gz')], { ...env, REDIS_URL: 'redis://127.0.0.1:1' });
    expect(missing.stderr).toMatch(/^mailstream: \S+missing\.jsonl\.gz: cannot be read: ENOENT/);
    expect(missing.code).toBe(1);
    expect(await redis.dbsize()).toBe(0);
  });

  it('restores into an empty Redis: same IDs, counters, group positions, pending owners and delivery counts', async () => {
    await redis.flushall();
    const dry = await runCli(['restore', file, '--dry-run'], env);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/nothing was changed/);
    expect(await redis.dbsize()).toBe(0);

    const result = await runCli(['restore', file, '--json'], env);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as { restoredPending: number; restoredEntries: number };
    expect(report).toMatchObject({ restoredPending: 8, restoredEntries: 30 });
    expect(await captureState(redis, PREFIX, ACCOUNT)).toEqual(before);
    expect(await redis.exists(`${PREFIX}:processes`)).toBe(0);
  });

  it('--force replaces the keys of the backup in a Redis that has moved on', async () => {
    await redis.xadd(`${PREFIX}:{${ACCOUNT}}:emails`, '*', 'key', 'later', 'email', '{}');
    await redis.hset(`${PREFIX}:{${ACCOUNT}}:mailbox:INBOX`, 'lastUid', '99');
    const result = await runCli(['restore', file, '--force'], env);
    expect(result.code).toBe(0);
    expect(await captureState(redis, PREFIX, ACCOUNT)).toEqual(before);
  });

  it('a worker started on the restored Redis claims the pending entries and delivers everything unacknowledged', async () => {
    const out = join(dir, 'sink', 'emails.jsonl');
    const worker = startDaemon(['worker'], {
      ...env, IMAP_USER: ACCOUNT, SINK_URL: `file://${out}`, HTTP_PORT: String(await freePort()),
      READ_BLOCK_MS: '200', CLAIM_IDLE_MS: '100', CLAIM_INTERVAL_MS: '100',
    });
    const stream = `${PREFIX}:{${ACCOUNT}}:emails`;
    const expected = filled.entryIds.filter((id) => !filled.acked.includes(id)).map((id) => `msgid-${filled.entryIds.indexOf(id) + 1}@example.com`).sort();
    expect(expected).toHaveLength(26);
    const delivered = await eventually(() => {
      let text = '';
      try { text = readFileSync(out, 'utf8'); } catch { return undefined; }
      const keys = [...new Set(text.trim().split('\n').map((l) => (JSON.parse(l) as { key: string }).key))].sort();
      return keys.length >= expected.length ? keys : undefined;
    }, { what: 'the unacknowledged entries in the sink' });
    expect(delivered).toEqual(expected);
    await eventually(async () => {
      const groups = (await redis.xinfo('GROUPS', stream)) as unknown[][];
      const workers = groups.map((g) => Object.fromEntries(g.flatMap((v, i) => (i % 2 === 0 ? [[v, g[i + 1]]] : [])))).find((g) => g.name === 'workers');
      return workers?.pending === 0 && workers?.lag === 0;
    }, { what: 'group workers with nothing pending or unread' });
    expect(await worker.stop()).toBe(0);
  });
});
