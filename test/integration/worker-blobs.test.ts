// Issue 12's acceptance on the worker's side, through the real daemons: a producer with a blob
// store (a directory, then an S3 API server) reads a mailbox over Dovecot holding a 25 MB PDF
// attachment, a 2 MB HTML body and a few mixed emails; then five workers, one consumer group
// each, deliver the same entries to a webhook, two JSONL files, PostgreSQL and a module. Every
// attachment's bytes, fetched as each sink's user would (the webhook's inline base64 or presigned
// URL, `mailstream blob get` on PostgreSQL's email_attachments.ref, a module's ctx.blobs.open),
// hash to that attachment's sha256; the sinks get the whole HTML by default and only the entry's
// start plus htmlRef with SINK_BODIES=inline.
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EmailEntry } from '../../src/core/entry.ts';
import { accountKeys } from '../../src/core/keys.ts';
import type { WebhookEmail } from '../../src/worker/sinks/attachments-webhook.ts';
import { ROOT, runCli, startDaemon, type Daemon } from '../helpers/cli.ts';
import { makeMail, mulberry32 } from '../helpers/corpus.ts';
import { startDovecot, type Dovecot } from '../helpers/dovecot.ts';
import { eventually } from '../helpers/ports.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { producerEnv } from '../helpers/producer-env.ts';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.ts';
import { startS3Server, type S3Server } from '../helpers/s3-server.ts';
import { metricValue, readEntries } from '../helpers/stream-read.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.ts';

const USER = 'user@example.com';
const MiB = 1024 * 1024;
let dovecot: Dovecot;
let redisServer: RedisServer;
let redis: Redis;
let s3: S3Server;
let db: TestDatabase;
let receiver: WebhookReceiver;
let dir: string;

beforeAll(async () => {
  [dovecot, redisServer, s3, db, receiver] = await Promise.all([startDovecot(), startRedisServer(), startS3Server(), createTestDatabase(), startWebhookReceiver()]);
  redis = redisServer.client();
  dir = mkdtempSync(join(tmpdir(), 'ms-worker-blobs-'));
  // The handler imports nothing of mailstream, but sits where a user's would.
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(ROOT, join(dir, 'node_modules', 'mailstream'), 'dir');
});

afterAll(async () => {
  redis?.disconnect();
  await receiver?.close();
  await dovecot?.destroy();
  await redisServer?.destroy();
  await s3?.destroy();
  await db?.drop();
  rmSync(dir, { recursive: true, force: true });
  expect(await killAllTracked()).toBe(0);
});

const sha = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');
const base64Lines = (data: Buffer) => data.toString('base64').replace(/.{76}/g, '$&\r\n');

function pdfMail(tag: string): { raw: Buffer; pdf: Buffer } {
  const pdf = Buffer.concat([Buffer.from('%PDF-1.4\n'), randomBytes(25 * MiB - 15), Buffer.from('\n%%EOF')]);
  const b = `pdf-${tag}`;
  const raw = Buffer.from(`From: <scanner@example.org>\r\nTo: ${USER}\r\nSubject: scan ${tag}\r\nMessage-ID: <pdf-${tag}@worker-blobs.test>\r\n`
    + `Date: Thu, 01 Jan 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="${b}"\r\n\r\n`
    + `--${b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe scan is attached.\r\n`
    + `--${b}\r\nContent-Type: application/pdf; name="scan.pdf"\r\nContent-Disposition: attachment; filename="scan.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n`
    + `${base64Lines(pdf)}\r\n--${b}--\r\n`);
  return { raw, pdf };
}

function htmlMail(tag: string): { raw: Buffer; html: string } {
  const row = '<tr><td>invoice</td><td>quarterly ledger</td><td>1,234.56 €</td></tr>\r\n';
  const html = `<html><body><table>\r\n${row.repeat(Math.ceil(2 * MiB / Buffer.byteLength(row)))}</table></body></html>`;
  const raw = Buffer.from(`From: <newsletter@example.org>\r\nTo: ${USER}\r\nSubject: report ${tag}\r\nMessage-ID: <html-${tag}@worker-blobs.test>\r\n`
    + `Date: Thu, 01 Jan 2026 11:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n${html}`);
  // As mailparser gives it (line ends as \n), which is what the entry and the store hold.
  return { raw, html: html.replace(/\r\n/g, '\n') };
}

/** A module handler that hashes every blob of each email through ctx.blobs.open and logs the result. */
function hashingHandler(log: string): string {
  const path = join(dir, `hashing-${randomBytes(3).toString('hex')}.mjs`);
  writeFileSync(path, `
import { createHash } from 'node:crypto';
import { appendFileSync } from 'node:fs';
async function hash(blobs, ref) {
  const h = createHash('sha256');
  for await (const chunk of await blobs.open(ref)) h.update(chunk);
  return h.digest('hex');
}
export async function handle(email, ctx) {
  const attachments = [];
  for (const a of email.attachments) attachments.push({ sha256: a.sha256, read: await hash(ctx.blobs, a.ref) });
  const raw = { sha256: email.raw.sha256, read: await hash(ctx.blobs, email.raw.ref) };
  appendFileSync(${JSON.stringify(log)}, JSON.stringify({ key: ctx.idempotencyKey, attachments, raw, htmlLength: email.html?.length ?? 0 }) + '\\n');
}
`);
  return path;
}

function jsonLines<T>(path: string): T[] {
  try {
    return readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as T);
  } catch {
    return [];
  }
}

async function blobGet(env: Record<string, string>, ref: string): Promise<Buffer> {
  const out = join(dir, `blob-${randomBytes(4).toString('hex')}`);
  const result = await runCli(['blob', 'get', ref, '-o', out], env);
  expect(result.code, result.stderr).toBe(0);
  const data = readFileSync(out);
  rmSync(out);
  return data;
}

describe.each([
  { backend: 'file', storeEnv: (): Record<string, string> => ({ BLOB_STORE_URL: `file://${mkdtempSync(join(dir, 'store-'))}` }), webhookEnv: { WEBHOOK_ATTACHMENTS: 'inline', WEBHOOK_INLINE_MAX_BYTES: String(32 * MiB) } },
  { backend: 's3', storeEnv: (): Record<string, string> => s3.env(`worker-${randomBytes(3).toString('hex')}`), webhookEnv: {} },
])('workers with a $backend blob store', ({ backend, storeEnv, webhookEnv }) => {
  it('every attachment\'s bytes reach the webhook, PostgreSQL (+ blob get) and a module intact; whole HTML by default, its start plus htmlRef inline', async () => {
    const mailbox = `Worker-${backend}`;
    const random = mulberry32(12);
    const mixed = (['attachment', 'alternative', 'attachment', 'charset', 'plain'] as const).map((kind, i) => makeMail(kind, i, random, { tag: `wb-${backend}` }));
    const big = pdfMail(backend);
    const long = htmlMail(backend);
    dovecot.seed(USER, mailbox, [...mixed.map((m) => m.raw), big.raw, long.raw]);
    const blobEnv = storeEnv();
    const env = producerEnv({ redisUrl: redisServer.url, dovecot, mailboxes: [mailbox], extra: { START_FROM: 'all', ...blobEnv } });
    const prefix = env.MAILSTREAM_PREFIX!;
    const stream = accountKeys(prefix, USER).stream;
    const producer = startDaemon(['producer'], env);
    await eventually(async () => (await redis.xlen(stream)) === 7, { what: 'seven entries' });
    expect(await producer.stop()).toBe(0);

    const entries = await readEntries(redis, stream);
    const byKey = new Map(entries.map((e) => [e.key, e]));
    const pdfEntry = entries.find((e) => e.messageId === `pdf-${backend}@worker-blobs.test`)!;
    const htmlEntry = entries.find((e) => e.messageId === `html-${backend}@worker-blobs.test`)!;
    expect(pdfEntry.attachments[0]).toMatchObject({ size: big.pdf.length, sha256: sha(big.pdf) });
    expect(htmlEntry).toMatchObject({ htmlTruncated: true, htmlRef: `sha256:${sha(long.html)}` });
    const attachmentCount = entries.reduce((n, e) => n + e.attachments.length, 0);
    expect(attachmentCount).toBeGreaterThanOrEqual(3);

    const base = { REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: prefix, IMAP_USER: USER, HTTP_PORT: '0', READ_BLOCK_MS: '200', ...blobEnv };
    const out = mkdtempSync(join(dir, 'out-'));
    const moduleLog = join(out, 'module.log');
    const workers: Daemon[] = [
      startDaemon(['worker'], { ...base, CONSUMER_GROUP: 'hook', SINK_URL: `${receiver.url}?backend=${backend}`, MAX_BODY_BYTES: String(4 * MiB), ...webhookEnv }),
      startDaemon(['worker'], { ...base, CONSUMER_GROUP: 'jsonl', SINK_URL: `file://${join(out, 'whole.jsonl')}`, MAX_BODY_BYTES: String(4 * MiB) }),
      startDaemon(['worker'], { ...base, CONSUMER_GROUP: 'jsonl-inline', SINK_URL: `file://${join(out, 'inline.jsonl')}`, SINK_BODIES: 'inline' }),
      // MAX_BODY_BYTES at its default (1 MiB): the HTML read back is cut there, flagged.
      startDaemon(['worker'], { ...base, CONSUMER_GROUP: 'pg', SINK_URL: db.url }),
      startDaemon(['worker'], { ...base, CONSUMER_GROUP: 'module', SINK_URL: `module://${hashingHandler(moduleLog)}` }),
    ];
    const hooked = () => receiver.requests.filter((r) => byKey.has(r.key));
    const delivered = async () => {
      const rows = await db.query<{ n: string }>('SELECT count(*) AS n FROM emails WHERE mailbox = $1', [mailbox]);
      return hooked().length === 7 && jsonLines(join(out, 'whole.jsonl')).length === 7 && jsonLines(join(out, 'inline.jsonl')).length === 7
        && Number(rows.rows[0]!.n) === 7 && jsonLines(moduleLog).length === 7;
    };
    await eventually(delivered, { what: 'seven emails in every sink' });
    // The module read every attachment whole through ctx.blobs; the JSONL worker the long HTML.
    const metricsOf = async (worker: Daemon) => (await fetch(`${(await worker.waitForLog((l) => l.msg === 'health and metrics listening')).url as string}/metrics`)).text();
    const moduleMetrics = await metricsOf(workers[4]!);
    expect(metricValue(moduleMetrics, 'mailstream_blob_reads_total', 'result="ok"')).toBeGreaterThanOrEqual(attachmentCount);
    expect(metricValue(moduleMetrics, 'mailstream_blob_read_bytes_total')).toBeGreaterThanOrEqual(big.pdf.length);
    expect(metricValue(moduleMetrics, 'mailstream_blob_read_duration_seconds_count')).toBeGreaterThanOrEqual(attachmentCount);
    expect(metricValue(moduleMetrics, 'mailstream_blob_reads_total', 'result="unavailable"')).toBe(0);
    const jsonlMetrics = await metricsOf(workers[1]!);
    expect(metricValue(jsonlMetrics, 'mailstream_blob_reads_total', 'result="ok"')).toBeGreaterThanOrEqual(1);
    expect(metricValue(jsonlMetrics, 'mailstream_blob_read_bytes_total')).toBeGreaterThanOrEqual(Buffer.byteLength(long.html));
    expect((await Promise.all(workers.map((w) => w.stop()))).every((code) => code === 0)).toBe(true);

    // Webhook: the bytes inline (file store) or behind a presigned URL (S3), each as its sha256 says.
    const payloads = hooked().map((r) => JSON.parse(r.body) as WebhookEmail);
    let checked = 0;
    for (const payload of payloads) {
      for (const attachment of payload.attachments) {
        let bytes: Buffer;
        if (backend === 'file') {
          bytes = Buffer.from(attachment.contentBase64!, 'base64');
        } else {
          expect(attachment.contentBase64).toBeUndefined();
          bytes = Buffer.from(await (await fetch(attachment.url!)).arrayBuffer());
        }
        expect(sha(bytes), `${payload.key} ${attachment.filename}`).toBe(attachment.sha256);
        checked += 1;
      }
      if (backend === 's3') {
        expect(sha(Buffer.from(await (await fetch(payload.raw!.url!)).arrayBuffer()))).toBe(payload.raw!.sha256);
        expect(Date.parse(payload.urlsExpireAt!)).toBeGreaterThan(Date.now() + 3_000_000);
      }
    }
    expect(checked).toBe(attachmentCount);
    const hookHtml = payloads.find((p) => p.key === htmlEntry.key)!;
    expect(hookHtml).toMatchObject({ htmlTruncated: false, htmlRef: htmlEntry.htmlRef });
    expect(hookHtml.html).toBe(long.html);

    // JSONL: the whole HTML by default; with SINK_BODIES=inline the entry's start and its ref.
    const whole = jsonLines<EmailEntry>(join(out, 'whole.jsonl')).find((e) => e.key === htmlEntry.key)!;
    expect(whole).toMatchObject({ html: long.html, htmlTruncated: false, htmlRef: htmlEntry.htmlRef });
    const inline = jsonLines<EmailEntry>(join(out, 'inline.jsonl')).find((e) => e.key === htmlEntry.key)!;
    expect(inline).toEqual(htmlEntry);
    expect(Buffer.byteLength(inline.html!)).toBeLessThanOrEqual(4096);
    expect(long.html.startsWith(inline.html!)).toBe(true);
    for (const line of jsonLines<EmailEntry>(join(out, 'inline.jsonl'))) expect(line).toEqual(byKey.get(line.key));

    // PostgreSQL: one row per attachment with its ref, the raw ref on the email; `blob get` gives the bytes.
    const rows = (await db.query<{ idempotency_key: string; attachment_index: number; sha256: string; ref: string; size_bytes: string }>(
      'SELECT a.idempotency_key, a.attachment_index, a.sha256, a.ref, a.size_bytes FROM email_attachments a JOIN emails e USING (idempotency_key) WHERE e.mailbox = $1', [mailbox])).rows;
    expect(rows).toHaveLength(attachmentCount);
    const fetched = await Promise.all(rows.map((row) => blobGet(blobEnv, row.ref)));
    rows.forEach((row, i) => {
      const meta = byKey.get(row.idempotency_key)!.attachments[row.attachment_index]!;
      expect(row).toMatchObject({ sha256: meta.sha256, ref: meta.ref, size_bytes: String(meta.size) });
      expect(sha(fetched[i]!)).toBe(row.sha256);
    });
    const emails = (await db.query<{ idempotency_key: string; raw_ref: string; html_bytes: number; html_truncated: boolean }>(
      'SELECT idempotency_key, raw_ref, octet_length(email->>\'html\') AS html_bytes, (email->>\'htmlTruncated\')::boolean AS html_truncated FROM emails WHERE mailbox = $1', [mailbox])).rows;
    for (const row of emails) expect(row.raw_ref).toBe(byKey.get(row.idempotency_key)!.raw!.ref);
    const pgHtml = emails.find((r) => r.idempotency_key === htmlEntry.key)!;
    expect(pgHtml.html_truncated).toBe(true);
    expect(pgHtml.html_bytes).toBeGreaterThan(MiB - 4);
    expect(pgHtml.html_bytes).toBeLessThanOrEqual(MiB);

    // Module: ctx.blobs.open streams each attachment and the raw message back, as their sha256 say.
    const handled = jsonLines<{ key: string; attachments: Array<{ sha256: string; read: string }>; raw: { sha256: string; read: string }; htmlLength: number }>(moduleLog);
    expect(handled.map((h) => h.key).sort()).toEqual([...byKey.keys()].sort());
    for (const h of handled) {
      for (const a of h.attachments) expect(a.read).toBe(a.sha256);
      expect(h.raw.read).toBe(h.raw.sha256);
    }
    expect(handled.find((h) => h.key === pdfEntry.key)!.attachments).toEqual([{ sha256: sha(big.pdf), read: sha(big.pdf) }]);
    // Read back too, and cut at the default MAX_BODY_BYTES (1 MiB).
    const moduleHtml = handled.find((h) => h.key === htmlEntry.key)!.htmlLength;
    expect(moduleHtml).toBeGreaterThan(1_000_000);
    expect(moduleHtml).toBeLessThan(long.html.length);
  });
});
