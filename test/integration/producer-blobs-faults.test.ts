// The blob store when things go wrong: the producer killed (SIGKILL) between a batch's blob writes
// and its append, an S3 store down in the middle of a backfill, and `blob gc` collecting only what
// no stream or DLQ entry refers to. In every case: nothing lost, nothing appended twice, and no
// entry that points at a missing blob.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { refsIn } from '../../src/core/blobs/blob-ref.ts';
import type { BlobStore } from '../../src/core/blobs/blob-store.ts';
import { FileBlobStore, INDEX_FILE } from '../../src/core/blobs/file-store.ts';
import { S3BlobStore } from '../../src/core/blobs/s3-store.ts';
import type { EmailEntry } from '../../src/core/entry.ts';
import { accountKeys } from '../../src/core/keys.ts';
import { runCli, startDaemon } from '../helpers/cli.ts';
import { generateCorpus } from '../helpers/corpus.ts';
import { startDovecot, type Dovecot } from '../helpers/dovecot.ts';
import { eventually } from '../helpers/ports.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { producerEnv } from '../helpers/producer-env.ts';
import { S3_CREDENTIALS, startS3Server, type S3Server } from '../helpers/s3-server.ts';
import { metricValue, readEntries } from '../helpers/stream-read.ts';
import { startTestRedis, type TestRedis } from '../helpers/test-redis.ts';

const USER = 'user@example.com';
let dovecot: Dovecot;
let redisServer: TestRedis;
let redis: Redis;
let s3: S3Server;
const dirs: string[] = [];

beforeAll(async () => {
  [dovecot, redisServer, s3] = await Promise.all([startDovecot(), startTestRedis({ aof: true }), startS3Server()]);
  redis = redisServer.client();
});

afterAll(async () => {
  redis?.disconnect();
  await dovecot?.destroy();
  await redisServer?.destroy();
  await s3?.destroy();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  expect(await killAllTracked()).toBe(0);
});

function tempDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `ms-${name}-`));
  dirs.push(dir);
  return dir;
}

const refsOf = (entries: EmailEntry[]) => new Set(entries.flatMap((e) => refsIn(JSON.stringify(e))));

async function listed(store: BlobStore): Promise<Set<string>> {
  const refs = new Set<string>();
  for await (const blob of store.list()) refs.add(blob.ref);
  return refs;
}

/** Every entry of the mailbox once, in UID order, each with its raw blob and nothing missing. */
async function expectComplete(stream: string, count: number, store: BlobStore): Promise<EmailEntry[]> {
  const entries = await readEntries(redis, stream);
  expect(entries.map((e) => e.uid)).toEqual(Array.from({ length: count }, (_, i) => i + 1));
  expect(new Set(entries.map((e) => e.key)).size).toBe(count);
  for (const entry of entries) expect(entry.raw?.ref).toMatch(/^sha256:/);
  const missing: string[] = [];
  for (const ref of refsOf(entries)) if (!await store.stat(ref)) missing.push(ref);
  expect(missing).toEqual([]);
  return entries;
}

async function readiness(url: string): Promise<{ status: number; reasons: string }> {
  const reply = await fetch(`${url}/ready`);
  return { status: reply.status, reasons: await reply.text() };
}

describe('blob store faults', () => {
  it('kill -9 after a batch\'s blobs are written and before its append: after a restart nothing is lost and no entry points at a missing blob', async () => {
    const mailbox = 'CrashBlobs';
    const corpus = generateCorpus(60, { seed: 81, tag: 'crash-blobs' });
    dovecot.seed(USER, mailbox, corpus.map((m) => m.raw));
    const dir = tempDir('crash-store');
    const store = new FileBlobStore({ dir });
    const env = producerEnv({ redisUrl: redisServer.url, dovecot, mailboxes: [mailbox], extra: { START_FROM: 'all', FETCH_BATCH_SIZE: '10', BLOB_STORE_URL: `file://${dir}` } });
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);

    const crashing = startDaemon(['producer'], { ...env, FAULT_INJECTION: 'after-blobs:3' });
    expect(await crashing.tracked.exited).toBe('SIGKILL');
    const before = await readEntries(redis, keys.stream);
    expect(before.map((e) => e.uid)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    // The third batch's blobs are in the store, referenced by no entry: the only trace of the crash.
    const unreferenced = [...await listed(store)].filter((ref) => !refsOf(before).has(ref));
    expect(unreferenced.length).toBeGreaterThanOrEqual(10);

    const restarted = startDaemon(['producer'], env);
    await eventually(async () => Number(await redis.hget(keys.mailbox(mailbox), 'lastUid')) === corpus.length, { what: 'the whole mailbox' });
    const entries = await expectComplete(keys.stream, corpus.length, store);
    // Written again after the restart, the same content landed on the same objects.
    for (const ref of unreferenced) expect(refsOf(entries).has(ref), ref).toBe(true);
    expect(await restarted.stop()).toBe(0);
  });

  it('kill -9 after a batch\'s blobs are written and before the barrier makes them durable: after a restart nothing is lost and no entry points at a missing blob', async () => {
    const mailbox = 'CrashBeforeBarrier';
    const corpus = generateCorpus(60, { seed: 82, tag: 'crash-barrier' });
    dovecot.seed(USER, mailbox, corpus.map((m) => m.raw));
    const dir = tempDir('crash-barrier-store');
    const store = new FileBlobStore({ dir });
    const env = producerEnv({ redisUrl: redisServer.url, dovecot, mailboxes: [mailbox], extra: { START_FROM: 'all', FETCH_BATCH_SIZE: '10', BLOB_STORE_URL: `file://${dir}` } });
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);

    const crashing = startDaemon(['producer'], { ...env, FAULT_INJECTION: 'after-blob-writes:3' });
    expect(await crashing.tracked.exited).toBe('SIGKILL');
    const before = await readEntries(redis, keys.stream);
    expect(before.map((e) => e.uid)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    for (const ref of refsOf(before)) expect(await store.stat(ref), ref).not.toBeNull();

    const restarted = startDaemon(['producer'], env);
    await eventually(async () => Number(await redis.hget(keys.mailbox(mailbox), 'lastUid')) === corpus.length, { what: 'the whole mailbox' });
    await expectComplete(keys.stream, corpus.length, store);
    expect(await restarted.stop()).toBe(0);
    // What the crash left half-done is bytes in packs no index row points at: compaction takes
    // them, and every entry still finds its blobs.
    await store.compact(new Date(Date.now() + 60_000), false);
    expect(await store.compact(new Date(Date.now() + 60_000), true)).toEqual({ packs: 0, bytesFreed: 0 });
    await expectComplete(keys.stream, corpus.length, store);
  });

  it('blob gc removes old blobs no stream or DLQ entry refers to, and keeps the rest', async () => {
    const mailbox = 'GcBlobs';
    const corpus = generateCorpus(15, { seed: 83, tag: 'gc-blobs' });
    dovecot.seed(USER, mailbox, corpus.map((m) => m.raw));
    const dir = tempDir('gc-store');
    const store = new FileBlobStore({ dir });
    const env = producerEnv({ redisUrl: redisServer.url, dovecot, mailboxes: [mailbox], extra: { START_FROM: 'all', BLOB_STORE_URL: `file://${dir}` } });
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);
    const daemon = startDaemon(['producer'], env);
    await eventually(async () => (await redis.xlen(keys.stream)) === corpus.length, { what: 'the mailbox' });
    expect(await daemon.stop()).toBe(0);

    const entries = await readEntries(redis, keys.stream);
    // One entry leaves the stream for the DLQ (its blobs must stay), one is gone for good.
    const [deadId, deadFields] = (await redis.xrange(keys.stream, '-', '+'))[0]!;
    await redis.xadd(keys.dlq, '*', 'id', deadId, 'reason', 'rejected', ...deadFields);
    const [goneId, goneFields] = (await redis.xrange(keys.stream, '-', '+'))[1]!;
    await redis.xdel(keys.stream, deadId, goneId);
    const goneRefs = refsIn(goneFields.join(' ')).filter((ref) => !refsIn(JSON.stringify(entries.filter((e) => e.uid !== 2))).includes(ref));
    expect(goneRefs.length).toBeGreaterThan(0);
    const orphan = await store.put(Buffer.from('left by a crash'));
    const fresh = await store.put(Buffer.from('written a minute ago'));
    const old = new Date(Date.now() - 40 * 86_400_000);
    const index = new DatabaseSync(join(dir, INDEX_FILE));
    index.prepare('UPDATE objects SET put_at = ? WHERE sha256 != ?').run(old.getTime(), fresh.sha256);
    index.close();

    const gcEnv = { ...env, LOG_LEVEL: 'warn' };
    const dry = await runCli(['blob', 'gc', '--older-than', '30d', '--dry-run', '--json'], gcEnv);
    expect(dry.code, dry.stderr).toBe(0);
    expect(JSON.parse(dry.stdout)).toMatchObject({ dryRun: true, removed: goneRefs.length + 1 });
    expect(await store.stat(orphan.ref)).not.toBeNull();

    const real = await runCli(['blob', 'gc', '--older-than', '30d'], gcEnv);
    expect(real.code, real.stderr).toBe(0);
    expect(real.stdout).toMatch(new RegExp(`removed ${goneRefs.length + 1} `));
    expect(await store.stat(orphan.ref)).toBeNull();
    for (const ref of goneRefs) expect(await store.stat(ref)).toBeNull();
    expect(await store.stat(fresh.ref)).not.toBeNull();
    // Whatever the stream and the DLQ still point at is there.
    const kept = refsIn(JSON.stringify(await redis.xrange(keys.stream, '-', '+')) + JSON.stringify(await redis.xrange(keys.dlq, '-', '+')));
    for (const ref of kept) expect(await store.stat(ref), ref).not.toBeNull();

    const s3Gc = await runCli(['blob', 'gc', '--older-than', '30d'], { ...env, ...s3.env() });
    expect(s3Gc.code).toBe(2);
    expect(s3Gc.stderr).toMatch(/lifecycle rule/);
  });

  it('S3 down mid-backfill: appends pause, /ready says why, and once it is back everything arrives with its blobs', async () => {
    const mailbox = 'S3Outage';
    const corpus = generateCorpus(200, { seed: 85, tag: 's3-outage' });
    dovecot.seed(USER, mailbox, corpus.map((m) => m.raw));
    const prefix = `outage-${randomBytes(3).toString('hex')}`;
    const store = new S3BlobStore({ bucket: s3.bucket, prefix: `${prefix}/`, endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3_CREDENTIALS });
    const env = producerEnv({ redisUrl: redisServer.url, dovecot, mailboxes: [mailbox], extra: { START_FROM: 'all', FETCH_BATCH_SIZE: '10', ...s3.env(prefix) } });
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);
    const daemon = startDaemon(['producer'], env);
    const url = (await daemon.waitForLog((l) => l.msg === 'health and metrics listening')).url as string;
    const metrics = async () => (await fetch(`${url}/metrics`)).text();
    try {
      await eventually(async () => (await redis.xlen(keys.stream)) >= 30, { what: 'a few batches', intervalMs: 20 });
      await s3.stop();

      await eventually(async () => /blob store .*fetching paused/.test((await readiness(url)).reasons), { what: '/ready naming the blob store' });
      await eventually(async () => metricValue(await metrics(), 'mailstream_producer_paused', `mailbox="${mailbox}",reason="blob-store"`) === 1, { what: 'the pause' });
      const paused = await redis.xlen(keys.stream);
      expect(paused).toBeLessThan(corpus.length);
      // The breaker opens while the store stays away; probes keep failing; nothing is appended.
      await eventually(async () => metricValue(await metrics(), 'mailstream_circuit_breaker_state', 'breaker="blob-store"') === 2, { what: 'the breaker to open' });
      const ready = await readiness(url);
      expect(ready.status).toBe(503);
      expect(ready.reasons).toMatch(/circuit breaker open/);
      const status = await (await fetch(`${url}/status`)).json() as { blobStore: { available: boolean }; mailboxes: Array<{ state: string; paused: string | null }> };
      expect(status.blobStore.available).toBe(false);
      expect(status.mailboxes[0]).toMatchObject({ state: 'paused', paused: 'blob-store' });
      expect(await redis.xlen(keys.stream)).toBe(paused);
      expect(daemon.logs().some((l) => l.msg === 'fetching paused: the blob store does not take writes')).toBe(true);
    } finally {
      if (!s3.running()) await s3.start();
    }

    await eventually(async () => (await redis.xlen(keys.stream)) === corpus.length, { what: 'the whole mailbox after the outage' });
    await eventually(async () => (await readiness(url)).status === 200, { what: '/ready 200' });
    await expectComplete(keys.stream, corpus.length, store);
    const after = await metrics();
    expect(metricValue(after, 'mailstream_blob_write_failures_total')).toBeGreaterThan(0);
    expect(metricValue(after, 'mailstream_circuit_breaker_opens_total', 'breaker="blob-store"')).toBeGreaterThanOrEqual(1);
    expect(metricValue(after, 'mailstream_producer_paused', `mailbox="${mailbox}",reason="blob-store"`)).toBe(0);
    expect(daemon.logs().some((l) => l.msg === 'blob store takes writes again: fetching resumes')).toBe(true);
    expect(await daemon.stop()).toBe(0);
    await store.close();
  });
});
