// The worker and the blob store when things break, with a file store and an S3 API server, on
// entries a real producer wrote over Dovecot:
// - kill -9 of a worker while its module handler streams a blob through ctx.blobs.open: after a
//   restart every email is delivered, its bytes intact, nothing pending, nothing dead-lettered, and
//   `mailstream blob check` finds no entry referring to a missing blob;
// - the store stops answering (S3 server down; the file store's directory gone): the batch waits
//   as blob-unavailable, /ready names the store, the breaker opens, no attempt is charged (with
//   MAX_ATTEMPTS=2), and once the store is back every email reaches the webhook, whole, at attempt 1.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accountKeys } from '../../src/core/keys.ts';
import type { WebhookEmail } from '../../src/worker/sinks/attachments-webhook.ts';
import { runCli, startDaemon, type Daemon } from '../helpers/cli.ts';
import { startDovecot, type Dovecot } from '../helpers/dovecot.ts';
import { eventually } from '../helpers/ports.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { producerEnv } from '../helpers/producer-env.ts';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.ts';
import { startS3Server, type S3Server } from '../helpers/s3-server.ts';
import { metricValue, readEntries } from '../helpers/stream-read.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.ts';

const USER = 'user@example.com';
let dovecot: Dovecot;
let redisServer: RedisServer;
let redis: Redis;
let s3: S3Server;
let receiver: WebhookReceiver;
let dir: string;

beforeAll(async () => {
  [dovecot, redisServer, s3, receiver] = await Promise.all([startDovecot(), startRedisServer(), startS3Server(), startWebhookReceiver()]);
  redis = redisServer.client();
  dir = mkdtempSync(join(tmpdir(), 'ms-worker-blob-faults-'));
});

afterAll(async () => {
  redis?.disconnect();
  await receiver?.close();
  await dovecot?.destroy();
  await redisServer?.destroy();
  await s3?.destroy();
  rmSync(dir, { recursive: true, force: true });
  expect(await killAllTracked()).toBe(0);
});

const sha = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

function attachmentMail(tag: string, n: number, bytes: number): Buffer {
  const data = randomBytes(bytes).toString('base64').replace(/.{76}/g, '$&\r\n');
  return Buffer.from(`From: <a@example.org>\r\nTo: ${USER}\r\nSubject: file ${n}\r\nMessage-ID: <file-${tag}-${n}@faults.test>\r\nMIME-Version: 1.0\r\n`
    + `Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nattached\r\n`
    + `--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="f${n}.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n${data}\r\n--b--\r\n`);
}
const htmlMail = (tag: string, n: number) => Buffer.from(`From: <r@example.org>\r\nTo: ${USER}\r\nSubject: report ${n}\r\nMessage-ID: <html-${tag}-${n}@faults.test>\r\n`
  + `MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>${`<p>row ${n} of a long report</p>\r\n`.repeat(800)}</body></html>`);
const plainMail = (tag: string, n: number) => Buffer.from(`From: <p@example.org>\r\nTo: ${USER}\r\nSubject: note ${n}\r\nMessage-ID: <plain-${tag}-${n}@faults.test>\r\n\r\nA short note.\r\n`);

/** Runs a producer with the store over `messages` until they are all in the stream; returns its settings. */
async function produce(mailbox: string, messages: Buffer[], blobEnv: Record<string, string>): Promise<Record<string, string>> {
  dovecot.seed(USER, mailbox, messages);
  const env = producerEnv({ redisUrl: redisServer.url, dovecot, mailboxes: [mailbox], extra: { START_FROM: 'all', ...blobEnv } });
  const producer = startDaemon(['producer'], env);
  await eventually(async () => (await redis.xlen(accountKeys(env.MAILSTREAM_PREFIX!, USER).stream)) === messages.length, { what: 'every message appended' });
  expect(await producer.stop()).toBe(0);
  return env;
}

const backends = [
  { backend: 'file', storeEnv: (): Record<string, string> => ({ BLOB_STORE_URL: `file://${mkdtempSync(join(dir, 'store-'))}` }) },
  { backend: 's3', storeEnv: (): Record<string, string> => s3.env(`faults-${randomBytes(3).toString('hex')}`) },
];

describe.each(backends)('with a $backend blob store', ({ backend, storeEnv }) => {
  it('kill -9 while a module handler streams a blob: after a restart every email is delivered intact, none lost, no ref dangling', async () => {
    const tag = `kill-${backend}`;
    const messages = [...[1, 2, 3, 4].map((n) => attachmentMail(tag, n, 2 * 1024 * 1024)), plainMail(tag, 5), plainMail(tag, 6)];
    const blobEnv = storeEnv();
    const env = await produce(`Kill-${backend}`, messages, blobEnv);
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);
    const entries = await readEntries(redis, keys.stream);

    const progress = join(dir, `${tag}.progress`);
    const killed = join(dir, `${tag}.killed`);
    const handled = join(dir, `${tag}.handled`);
    const handler = join(dir, `${tag}.mjs`);
    // Reads slowly until the test has killed a worker, then at full speed.
    writeFileSync(handler, `
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync } from 'node:fs';
const pause = () => new Promise((r) => setTimeout(r, 30));
export async function handleBatch(emails, ctx) {
  for (const [i, email] of emails.entries()) {
    const read = [];
    for (const a of email.attachments) {
      appendFileSync(${JSON.stringify(progress)}, 'reading ' + a.ref + '\\n');
      const h = createHash('sha256');
      for await (const chunk of await ctx.blobs.open(a.ref)) {
        h.update(chunk);
        if (!existsSync(${JSON.stringify(killed)})) await pause();
      }
      read.push({ sha256: a.sha256, read: h.digest('hex') });
    }
    appendFileSync(${JSON.stringify(handled)}, JSON.stringify({ key: ctx.deliveries[i].idempotencyKey, read }) + '\\n');
  }
  return emails.map(() => ({ status: 'delivered' }));
}
`);
    const workerEnv = { ...blobEnv, REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: env.MAILSTREAM_PREFIX!, IMAP_USER: USER, SINK_URL: `module://${handler}`, HTTP_PORT: '0', READ_BLOCK_MS: '200', CONSUMER_NAME: `w-${tag}` };
    const first = startDaemon(['worker'], workerEnv);
    await eventually(() => { try { return readFileSync(progress, 'utf8').includes('reading sha256:'); } catch { return false; } }, { what: 'a blob being read' });
    first.tracked.child.kill('SIGKILL');
    expect(await first.tracked.exited).toBe('SIGKILL');
    writeFileSync(killed, '');

    // As systemd would: the same worker again.
    const second: Daemon = startDaemon(['worker'], workerEnv);
    const lines = () => { try { return readFileSync(handled, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { key: string; read: Array<{ sha256: string; read: string }> }); } catch { return []; } };
    await eventually(() => new Set(lines().map((l) => l.key)).size === entries.length, { what: 'every email handled' });
    await eventually(async () => (await redis.xpending(keys.stream, 'workers'))[0] === 0, { what: 'nothing pending' });
    expect(await second.stop()).toBe(0);

    expect(new Set(lines().map((l) => l.key))).toEqual(new Set(entries.map((e) => e.key)));
    for (const line of lines()) for (const a of line.read) expect(a.read, line.key).toBe(a.sha256);
    for (const entry of entries) expect(lines().find((l) => l.key === entry.key)!.read, entry.key).toHaveLength(entry.attachments.length);
    expect(await redis.xlen(keys.stream)).toBe(entries.length);
    expect(await redis.xlen(keys.dlq)).toBe(0);
    const check = await runCli(['blob', 'check', '--json'], { ...blobEnv, REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: env.MAILSTREAM_PREFIX!, IMAP_USER: USER });
    expect(check.code, check.stdout + check.stderr).toBe(0);
  });

  it('a store that stops answering: the batch waits uncharged, /ready names the store, and everything arrives whole once it is back', async () => {
    const tag = `down-${backend}`;
    const messages = [htmlMail(tag, 1), htmlMail(tag, 2), htmlMail(tag, 3), plainMail(tag, 4), plainMail(tag, 5)];
    const blobEnv = storeEnv();
    const env = await produce(`Down-${backend}`, messages, blobEnv);
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);
    const entries = await readEntries(redis, keys.stream);
    expect(entries.filter((e) => e.htmlRef)).toHaveLength(3);

    const storeDir = backend === 'file' ? new URL(blobEnv.BLOB_STORE_URL!).pathname : '';
    const takeDown = async () => (backend === 's3' ? s3.stop() : renameSync(storeDir, `${storeDir}.aside`));
    const bringBack = async () => (backend === 's3' ? s3.start() : renameSync(`${storeDir}.aside`, storeDir));
    await takeDown();

    const worker = startDaemon(['worker'], {
      ...blobEnv, REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: env.MAILSTREAM_PREFIX!, IMAP_USER: USER, SINK_URL: `${receiver.url}?tag=${tag}`,
      HTTP_PORT: '0', READ_BLOCK_MS: '200', RETRY_BASE_MS: '200', MAX_ATTEMPTS: '2',
    });
    const url = (await worker.waitForLog((l) => l.msg === 'health and metrics listening')).url as string;
    const metrics = async () => (await fetch(`${url}/metrics`)).text();
    await eventually(async () => metricValue(await metrics(), 'mailstream_circuit_breaker_opens_total', 'breaker="sink"') >= 2, { what: 'the breaker opened twice' });
    const ready = await fetch(`${url}/ready`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { reasons: string[] }).reasons.join('; ')).toMatch(/blob store/);
    expect(metricValue(await metrics(), 'mailstream_delivery_failures_total', 'kind="blob-unavailable"')).toBeGreaterThan(0);
    // The reads themselves: the store answered none (S3 down) or had nothing there (the directory gone).
    const reads = await metrics();
    expect(metricValue(reads, 'mailstream_blob_reads_total', 'result="unavailable"') + metricValue(reads, 'mailstream_blob_reads_total', 'result="missing"')).toBeGreaterThan(0);
    expect(metricValue(reads, 'mailstream_blob_reads_total', 'result="ok"')).toBe(0);
    const mine = () => receiver.requests.filter((r) => entries.some((e) => e.key === r.key));
    expect(mine()).toEqual([]);

    await bringBack();
    await eventually(() => new Set(mine().map((r) => r.key)).size === entries.length, { what: 'every email delivered' });
    for (const request of mine()) expect(request.headers['x-mailstream-attempt'], request.key).toBe('1');
    // The HTML read back whole: it hashes to its ref, the content address of the whole.
    for (const entry of entries.filter((e) => e.htmlRef)) {
      const payload = JSON.parse(mine().find((r) => r.key === entry.key)!.body) as WebhookEmail;
      expect(payload.htmlTruncated).toBe(false);
      expect(`sha256:${sha(payload.html!)}`).toBe(entry.htmlRef);
      expect(payload.html!.length).toBeGreaterThan(20_000);
    }
    expect(await redis.xlen(keys.dlq)).toBe(0);
    await eventually(async () => (await fetch(`${url}/ready`)).status === 200, { what: 'ready again' });
    expect(await worker.stop()).toBe(0);
  });
});
