// The producer with a blob store, against both backends (a directory, and an S3 API server on
// loopback): the raw source of every email, every attachment and long bodies are stored before the
// entry is appended, `mailstream blob get` gives them back (a 25 MB PDF and a 2 MB HTML body among
// mixed mail), and the stream grows by less than 16 KiB for such an email.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImapFlow } from 'imapflow';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { refsIn } from '../../src/core/blobs/blob-ref.ts';
import { accountKeys } from '../../src/core/keys.ts';
import { runCli, startDaemon } from '../helpers/cli.ts';
import { generateCorpus } from '../helpers/corpus.ts';
import { startDovecot, type Dovecot } from '../helpers/dovecot.ts';
import { eventually } from '../helpers/ports.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { producerEnv } from '../helpers/producer-env.ts';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.ts';
import { startS3Server, type S3Server } from '../helpers/s3-server.ts';
import { metricValue, readEntries } from '../helpers/stream-read.ts';

const USER = 'user@example.com';
let dovecot: Dovecot;
let redisServer: RedisServer;
let redis: Redis;
let s3: S3Server;
const dirs: string[] = [];

beforeAll(async () => {
  [dovecot, redisServer, s3] = await Promise.all([startDovecot(), startRedisServer(), startS3Server()]);
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

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const base64Lines = (data: Buffer) => data.toString('base64').replace(/.{76}/g, '$&\r\n');

function pdfMail(tag: string, pdfBytes: number): { raw: Buffer; pdf: Buffer } {
  const pdf = Buffer.concat([Buffer.from('%PDF-1.4\n'), randomBytes(pdfBytes - 15), Buffer.from('\n%%EOF')]);
  const b = `pdf-${tag}`;
  const raw = Buffer.from(`From: <scanner@example.org>\r\nTo: ${USER}\r\nSubject: scan ${tag}\r\nMessage-ID: <pdf-${tag}@blobs.test>\r\n`
    + `Date: Thu, 01 Jan 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="${b}"\r\n\r\n`
    + `--${b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe scan is attached.\r\n`
    + `--${b}\r\nContent-Type: application/pdf; name="scan.pdf"\r\nContent-Disposition: attachment; filename="scan.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n`
    + `${base64Lines(pdf)}\r\n--${b}--\r\n`);
  return { raw, pdf };
}

function htmlMail(tag: string, htmlBytes: number): { raw: Buffer; html: string } {
  const row = '<tr><td>invoice</td><td>quarterly ledger</td><td>1,234.56 €</td></tr>\r\n';
  const html = `<html><body><table>\r\n${row.repeat(Math.ceil(htmlBytes / Buffer.byteLength(row)))}</table></body></html>`;
  const raw = Buffer.from(`From: <newsletter@example.org>\r\nTo: ${USER}\r\nSubject: report ${tag}\r\nMessage-ID: <html-${tag}@blobs.test>\r\n`
    + `Date: Thu, 01 Jan 2026 11:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n${html}`);
  return { raw, html };
}

/** The messages as the IMAP server sends them, by UID. */
async function imapSources(mailbox: string): Promise<Map<number, Buffer>> {
  const user = dovecot.users.find((u) => u.user === USER)!;
  const client = new ImapFlow({ host: '127.0.0.1', port: dovecot.tlsPort, secure: true, logger: false, tls: { ca: readFileSync(dovecot.caFile), servername: 'localhost' }, auth: { user: user.user, pass: user.password } });
  await client.connect();
  try {
    await client.mailboxOpen(mailbox, { readOnly: true });
    const out = new Map<number, Buffer>();
    for await (const msg of client.fetch('1:*', { uid: true, source: true }, { uid: true })) out.set(msg.uid, msg.source!);
    return out;
  } finally {
    await client.logout().catch(() => client.close());
  }
}

/** Bytes Redis holds under a prefix (MEMORY USAGE of every key, all samples). */
async function memoryUnder(prefix: string): Promise<number> {
  let total = 0;
  for (const key of await redis.keys(`${prefix}:*`)) total += Number(await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'));
  return total;
}

async function blobGet(env: Record<string, string>, ref: string): Promise<Buffer> {
  const file = join(tempDir('blob-get'), 'out');
  const result = await runCli(['blob', 'get', ref, '-o', file], env);
  expect(result.code, result.stderr).toBe(0);
  return readFileSync(file);
}

describe.each([
  { backend: 'file', storeEnv: (): Record<string, string> => ({ BLOB_STORE_URL: `file://${tempDir('store')}` }) },
  { backend: 's3', storeEnv: (): Record<string, string> => s3.env(`acceptance-${randomBytes(3).toString('hex')}`) },
])('producer with a $backend blob store', ({ backend, storeEnv }) => {
  it('stores a 25 MB PDF, a 2 MB HTML body and every raw source; blob get returns them; Redis grows < 16 KiB per big email', async () => {
    const mailbox = `Blobs-${backend}`;
    const mixed = generateCorpus(12, { seed: 71, tag: `blobs-${backend}` });
    dovecot.seed(USER, mailbox, mixed.map((m) => m.raw));
    const blobEnv = storeEnv();
    const env = producerEnv({ redisUrl: redisServer.url, dovecot, mailboxes: [mailbox], extra: { START_FROM: 'all', ...blobEnv } });
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);
    const daemon = startDaemon(['producer'], env);
    const url = (await daemon.waitForLog((l) => l.msg === 'health and metrics listening')).url as string;
    await eventually(async () => (await redis.xlen(keys.stream)) === mixed.length, { what: 'the mixed mail' });

    // Each big email arrives alone (IMAP APPEND, heard through IDLE), so Redis' growth is its own.
    const big = pdfMail(backend, 25 * 1024 * 1024);
    const long = htmlMail(backend, 2 * 1024 * 1024);
    const growth: number[] = [];
    for (const mail of [big.raw, long.raw]) {
      const before = await memoryUnder(env.MAILSTREAM_PREFIX!);
      const length = await redis.xlen(keys.stream);
      await dovecot.append(USER, mailbox, [mail]);
      await eventually(async () => (await redis.xlen(keys.stream)) === length + 1, { what: 'the big email' });
      growth.push(await memoryUnder(env.MAILSTREAM_PREFIX!) - before);
    }
    expect(growth[0]).toBeLessThan(16 * 1024);
    expect(growth[1]).toBeLessThan(16 * 1024);

    const entries = await readEntries(redis, keys.stream);
    const sources = await imapSources(mailbox);
    const pdfEntry = entries.find((e) => e.messageId === `pdf-${backend}@blobs.test`)!;
    const htmlEntry = entries.find((e) => e.messageId === `html-${backend}@blobs.test`)!;

    // The PDF: its ref gives back the attachment, hashing to the sha256 the entry names.
    const attachment = pdfEntry.attachments.find((a) => a.contentType === 'application/pdf')!;
    expect(attachment).toMatchObject({ filename: 'scan.pdf', size: big.pdf.length, sha256: sha(big.pdf), ref: `sha256:${sha(big.pdf)}` });
    const pdfBack = await blobGet(blobEnv, attachment.ref!);
    expect(sha(pdfBack)).toBe(attachment.sha256);
    // The raw source, byte for byte what IMAP returns (25 MB of base64 and all).
    expect(pdfEntry.raw!.size).toBe(sources.get(pdfEntry.uid)!.length);
    expect((await blobGet(blobEnv, pdfEntry.raw!.ref)).equals(sources.get(pdfEntry.uid)!)).toBe(true);

    // The HTML body: its start inline, the whole behind htmlRef.
    expect(htmlEntry.htmlTruncated).toBe(true);
    expect(Buffer.byteLength(htmlEntry.html!)).toBeLessThanOrEqual(4096);
    // As mailparser decodes it (line ends as \n), like the inline part.
    const htmlBack = await blobGet(blobEnv, htmlEntry.htmlRef!);
    expect(sha(htmlBack)).toBe(sha(Buffer.from(long.html.replace(/\r\n/g, '\n'))));
    expect(htmlBack.toString('utf8').startsWith(htmlEntry.html!)).toBe(true);
    expect((await blobGet(blobEnv, htmlEntry.raw!.ref)).equals(sources.get(htmlEntry.uid)!)).toBe(true);

    // Every other email: its raw source and attachments are there too.
    for (const entry of entries) {
      expect(entry.v).toBe(3);
      expect(entry.raw!.sha256).toBe(sha(sources.get(entry.uid)!));
      for (const a of entry.attachments) expect(a.ref).toBe(`sha256:${a.sha256}`);
    }
    const stats = await runCli(['blob', 'stat', '--json'], blobEnv);
    expect(stats.code, stats.stderr).toBe(0);
    const distinct = new Set(entries.flatMap((e) => refsIn(JSON.stringify(e))));
    expect((JSON.parse(stats.stdout) as { objects: number }).objects).toBeGreaterThanOrEqual(distinct.size);

    const metrics = await (await fetch(`${url}/metrics`)).text();
    for (const kind of ['raw', 'attachment', 'html']) expect(metricValue(metrics, 'mailstream_blob_writes_total', `kind="${kind}",result="created"`), kind).toBeGreaterThan(0);
    expect(metricValue(metrics, 'mailstream_blob_written_bytes_total', 'kind="attachment"')).toBeGreaterThanOrEqual(big.pdf.length);
    expect(metricValue(metrics, 'mailstream_blob_write_failures_total')).toBeNaN();
    // Each batch's barrier is timed too (where the file store waits on its disk).
    expect(metricValue(metrics, 'mailstream_blob_write_duration_seconds_count', 'kind="barrier"')).toBeGreaterThan(0);
    expect(metricValue(metrics, 'mailstream_blob_store_up')).toBe(1);
    const status = await (await fetch(`${url}/status`)).json() as { blobStore: { kind: string; available: boolean } };
    expect(status.blobStore).toMatchObject({ kind: backend, available: true });
    expect(await daemon.stop()).toBe(0);
  });
});
