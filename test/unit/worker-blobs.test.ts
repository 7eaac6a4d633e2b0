// The worker's side of the blob store, as logic: entries built by the producer's own code into a
// real file store (a temporary directory), then passed through the blob wrapper to a sink that
// records what it is handed. Whole bodies read back and cut as the producer cuts, untouched emails
// passed as the same strings, a missing blob dead-lettered by ref, a store that does not answer
// holding the whole batch, the webhook's inline content and presigned URLs, and the settings.
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { FileBlobStore } from '../../src/core/blobs/file-store.ts';
import { S3BlobStore } from '../../src/core/blobs/s3-store.ts';
import type { EmailEntry } from '../../src/core/entry.ts';
import { BlobNotFoundError, BlobStoreUnavailableError, ConfigError, ERROR_KINDS } from '../../src/core/errors.ts';
import { buildEntry, type FetchMeta } from '../../src/producer/email-entry.ts';
import { webhookAttachments, type WebhookEmail } from '../../src/worker/sinks/attachments-webhook.ts';
import { wholeBodies, withBlobs, type EmailRewrite } from '../../src/worker/sinks/blob-bodies.ts';
import { createSink } from '../../src/worker/sinks/index.ts';
import { outcomeOfThrow } from '../../src/worker/sinks/module-contract.ts';
import { DELIVERED, type Delivery, type Outcome, type Sink } from '../../src/worker/sinks/types.ts';

const META: FetchMeta = { account: 'a@example.com', mailbox: 'INBOX', uidValidity: '7', uid: 1, internalDate: '2026-01-02T03:04:05.000Z', flags: [], size: 10 };
const dirs: string[] = [];
afterAll(() => { for (const dir of dirs) rmSync(dir, { recursive: true, force: true }); });

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ms-worker-blobs-'));
  dirs.push(dir);
  return dir;
}
const fileStore = () => new FileBlobStore({ dir: tempDir(), fsync: false });
const sha = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');
const live = () => new AbortController().signal;

/** A sink that takes everything and keeps what it was handed. */
function recordingSink(): Sink & { batches: Delivery[][] } {
  const batches: Delivery[][] = [];
  return {
    kind: 'jsonl', batches,
    deliver: async (batch) => { batches.push([...batch]); return batch.map((): Outcome => DELIVERED); },
    check: async () => {},
    close: async () => {},
  };
}

let uid = 0;
async function entryOf(store: FileBlobStore | null, raw: string, inlineBodyBytes = 256): Promise<Delivery> {
  uid += 1;
  const email = (await buildEntry(Buffer.from(raw), { ...META, uid }, { maxBodyBytes: 1024 * 1024, inlineBodyBytes }, store)).email;
  return { id: `${uid}-0`, key: (JSON.parse(email) as EmailEntry).key, email, account: META.account, previousAttempts: 0 };
}

const plain = (n: number) => `Message-ID: <plain-${n}@x>\r\nSubject: short\r\n\r\nShort body ${n}.\r\n`;
const htmlMail = (n: number, html: string) => `Message-ID: <html-${n}@x>\r\nContent-Type: text/html; charset=utf-8\r\n\r\n${html}`;
function withAttachments(n: number, files: Buffer[]): string {
  const parts = files.map((content, i) => `--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="f${i}.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n${content.toString('base64')}\r\n`);
  return `Message-ID: <att-${n}@x>\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n${parts.join('')}--b--\r\n`;
}

describe('whole bodies (SINK_BODIES=whole)', () => {
  it('reads text and html back whole, clears the truncation flag, keeps the refs; emails without refs pass as the same strings', async () => {
    const store = fileStore();
    const html = `<p>${'déjà vu '.repeat(3000)}</p>`;
    const long = await entryOf(store, htmlMail(1, html));
    const short = await entryOf(store, plain(1));
    expect((JSON.parse(long.email) as EmailEntry).htmlTruncated).toBe(true);
    const inner = recordingSink();
    const sink = withBlobs(inner, store, [wholeBodies(1024 * 1024)], { concurrency: 4 });
    expect(await sink.deliver([short, long], live())).toEqual([DELIVERED, DELIVERED]);
    const [sentShort, sentLong] = inner.batches[0]!;
    expect(sentShort).toBe(short);
    const email = JSON.parse(sentLong!.email) as EmailEntry;
    expect(email.html).toBe(html);
    expect(email.htmlTruncated).toBe(false);
    expect(email.htmlRef).toBe(`sha256:${sha(html)}`);
    expect(sentLong).toMatchObject({ id: long.id, key: long.key, previousAttempts: 0 });
  });

  it('cuts at MAX_BODY_BYTES on a character boundary, as the producer does, with the flag set', async () => {
    const store = fileStore();
    const text = 'ü'.repeat(2000); // 4000 bytes; a cut at an odd byte splits a character
    const delivery = await entryOf(store, `Message-ID: <t@x>\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n${text}`);
    const inner = recordingSink();
    await withBlobs(inner, store, [wholeBodies(1025)], { concurrency: 1 }).deliver([delivery], live());
    const email = JSON.parse(inner.batches[0]![0]!.email) as EmailEntry;
    expect(email.text).toBe('ü'.repeat(512));
    expect(email.textTruncated).toBe(true);
  });

  it('a blob the store does not hold: permanent, naming the ref; the rest of the batch is delivered', async () => {
    const store = fileStore();
    const gone = await entryOf(store, htmlMail(2, `<p>${'x'.repeat(5000)}</p>`));
    const ok = await entryOf(store, plain(2));
    const ref = (JSON.parse(gone.email) as EmailEntry).htmlRef!;
    expect(await store.delete(ref)).toBe(true);
    const inner = recordingSink();
    const outcomes = await withBlobs(inner, store, [wholeBodies(1024 * 1024)], { concurrency: 2 }).deliver([gone, ok], live());
    expect(outcomes[0]).toEqual({ status: 'permanent', reason: expect.stringContaining(ref) });
    expect(outcomes[1]).toEqual(DELIVERED);
    expect(inner.batches).toEqual([[ok]]);
  });

  it('a store holding nothing at all (a mount gone, the wrong prefix) is waited for, not taken at its word', async () => {
    const dir = tempDir();
    const store = new FileBlobStore({ dir, fsync: false });
    const long = await entryOf(store, htmlMail(7, `<p>${'u'.repeat(5000)}</p>`));
    // Everything under the directory gone (the store opens it afresh, empty).
    await store.close();
    for (const name of readdirSync(dir)) rmSync(join(dir, name), { recursive: true });
    const [outcome] = await withBlobs(recordingSink(), store, [wholeBodies(1024 * 1024)], { concurrency: 1 }).deliver([long], live());
    expect(outcome).toMatchObject({ status: 'retry', kind: 'blob-unavailable', reason: expect.stringContaining('holds no objects at all') });
  });

  it('a blob whose content does not match its ref: permanent (waiting cannot mend it)', async () => {
    const store = fileStore();
    const damaged = await entryOf(store, htmlMail(3, `<p>${'y'.repeat(5000)}</p>`));
    const ref = (JSON.parse(damaged.email) as EmailEntry).htmlRef!;
    // The object's bytes overwritten where they lie in their pack.
    const at = store.locate(ref)!;
    const fd = openSync(at.path, 'r+');
    writeSync(fd, Buffer.alloc(at.size, 'x'), 0, at.size, at.start);
    closeSync(fd);
    const outcomes = await withBlobs(recordingSink(), store, [wholeBodies(1024 * 1024)], { concurrency: 1 }).deliver([damaged], live());
    expect(outcomes).toEqual([{ status: 'permanent', reason: expect.stringMatching(/does not hash to its ref/) }]);
  });

  it('a store that does not answer holds the whole batch, and later ones until it answers, as blob-unavailable (a waitOut kind)', async () => {
    const store = fileStore();
    const long = await entryOf(store, htmlMail(4, `<p>${'z'.repeat(5000)}</p>`));
    const short = await entryOf(store, plain(4));
    // The store's directory turned into a file: every read fails with ENOTDIR, as on a lost mount.
    const broken = tempDir();
    rmSync(broken, { recursive: true });
    writeFileSync(broken, 'not a directory');
    const down = new FileBlobStore({ dir: broken });
    const inner = recordingSink();
    const sink = withBlobs(inner, down, [wholeBodies(1024 * 1024)], { concurrency: 2 });
    const outcomes = await sink.deliver([short, long], live());
    expect(outcomes).toEqual([
      { status: 'retry', kind: 'blob-unavailable', reason: expect.stringMatching(/^held with its batch: blob store/) },
      { status: 'retry', kind: 'blob-unavailable', reason: expect.stringContaining(broken) },
    ]);
    expect(inner.batches).toEqual([]);
    // Later batches wait for the store too, those that need nothing of it included, until it answers.
    expect(await sink.deliver([short], live())).toEqual([{ status: 'retry', kind: 'blob-unavailable', reason: expect.stringMatching(/^held while the blob store does not answer: blob store/) }]);
    expect(inner.batches).toEqual([]);
    expect(ERROR_KINDS['blob-unavailable']).toMatchObject({ waitOut: true, permanent: false, dependency: 'blob-store' });
    await expect(sink.check()).rejects.toThrow(`blob store ${broken}`);
    // The directory back (empty: the long email's blob is still not there, and an empty store is not believed).
    rmSync(broken);
    mkdirSync(broken);
    expect(await sink.deliver([short, long], live())).toEqual([
      { status: 'retry', kind: 'blob-unavailable', reason: expect.stringMatching(/^held with its batch/) },
      { status: 'retry', kind: 'blob-unavailable', reason: expect.stringContaining('holds no objects at all') },
    ]);
    expect(await sink.deliver([short], live())).toEqual([DELIVERED]);
    expect(inner.batches).toEqual([[short]]);
    rmSync(broken, { recursive: true });
    writeFileSync(broken, 'not a directory');
    // Asked without a failed read before, the store is asked itself.
    await expect(withBlobs(recordingSink(), down, [], { concurrency: 1 }).check()).rejects.toThrow(`blob store ${broken}: read failed: ENOTDIR`);
    await expect(withBlobs(recordingSink(), store, [], { concurrency: 1 }).check()).resolves.toBeUndefined();
  });

  it('a worker without a store meeting a ref waits (blob-unavailable) and /ready says BLOB_STORE_URL is missing', async () => {
    const long = await entryOf(fileStore(), htmlMail(5, `<p>${'w'.repeat(5000)}</p>`));
    const sink = withBlobs(recordingSink(), null, [wholeBodies(1024 * 1024)], { concurrency: 1 });
    await expect(sink.check()).resolves.toBeUndefined();
    const [outcome] = await sink.deliver([long], live());
    expect(outcome).toMatchObject({ status: 'retry', kind: 'blob-unavailable', reason: expect.stringContaining('BLOB_STORE_URL=none') });
    await expect(sink.check()).rejects.toThrow('BLOB_STORE_URL=none');
  });

  it('an email\'s own problems stay its own: a ref that is no ref is permanent, a rewrite that throws retries that email alone', async () => {
    const store = fileStore();
    const ok = await entryOf(store, plain(8));
    const badRef: Delivery = { ...ok, id: '90-0', key: 'bad-ref', email: JSON.stringify({ ...JSON.parse(ok.email), htmlRef: 'sha256:not-hex' }) };
    const inner = recordingSink();
    const outcomes = await withBlobs(inner, store, [wholeBodies(1024 * 1024)], { concurrency: 1 }).deliver([badRef, ok], live());
    expect(outcomes).toEqual([{ status: 'permanent', reason: expect.stringContaining('not a blob ref: sha256:not-hex') }, DELIVERED]);
    const buggy: EmailRewrite = { wants: (email) => email.includes('not-hex'), apply: () => Promise.reject(new TypeError('attachments is not iterable')) };
    const mixed = await withBlobs(recordingSink(), store, [buggy], { concurrency: 1 }).deliver([badRef, ok], live());
    expect(mixed).toEqual([{ status: 'retry', kind: 'sink-failed', reason: expect.stringContaining('attachments is not iterable') }, DELIVERED]);
  });

  it('a delivery given up at shutdown is not attempted', async () => {
    const store = fileStore();
    const long = await entryOf(store, htmlMail(6, `<p>${'v'.repeat(5000)}</p>`));
    const stopped = new AbortController();
    stopped.abort();
    const [outcome] = await withBlobs(recordingSink(), store, [wholeBodies(1024 * 1024)], { concurrency: 1 }).deliver([long], stopped.signal);
    expect(outcome).toMatchObject({ status: 'retry' });
    expect(outcome).not.toHaveProperty('kind');
  });
});

describe('webhook attachments (WEBHOOK_ATTACHMENTS)', () => {
  const files = [Buffer.alloc(3000, 1), Buffer.alloc(9000, 2), Buffer.alloc(2000, 3)];

  async function through(rewrite: EmailRewrite | undefined, store: FileBlobStore | S3BlobStore, delivery: Delivery): Promise<WebhookEmail> {
    const inner = recordingSink();
    await withBlobs(inner, store as never, rewrite ? [rewrite] : [], { concurrency: 1 }).deliver([delivery], live());
    return JSON.parse(inner.batches[0]![0]!.email) as WebhookEmail;
  }

  it('inline: content as base64 while the email\'s budget lasts (in order, skipping what does not fit); refs for the rest', async () => {
    const store = fileStore();
    const delivery = await entryOf(store, withAttachments(1, files));
    const email = await through(webhookAttachments(store, { mode: 'inline', inlineMaxBytes: 6000, urlTtlSeconds: 60 }), store, delivery);
    const [first, second, third] = email.attachments;
    expect(Buffer.from(first!.contentBase64!, 'base64').equals(files[0]!)).toBe(true);
    expect(second!.contentBase64).toBeUndefined();
    expect(second!.ref).toBe(`sha256:${sha(files[1]!)}`);
    expect(Buffer.from(third!.contentBase64!, 'base64').equals(files[2]!)).toBe(true);
    // A file store cannot sign URLs.
    expect(email.raw!.url).toBeUndefined();
    expect(email.urlsExpireAt).toBeUndefined();
  });

  it('urls: a file store changes nothing; refs never does', async () => {
    const store = fileStore();
    expect(webhookAttachments(store, { mode: 'urls', inlineMaxBytes: 0, urlTtlSeconds: 60 })).toBeUndefined();
    expect(webhookAttachments(store, { mode: 'refs', inlineMaxBytes: 0, urlTtlSeconds: 60 })).toBeUndefined();
    expect(webhookAttachments(null, { mode: 'inline', inlineMaxBytes: 10, urlTtlSeconds: 60 })).toBeUndefined();
  });

  it('urls with an S3 store: a presigned GET per ref (signed locally), expiring after BLOB_URL_TTL_S', async () => {
    const source = fileStore();
    const delivery = await entryOf(source, withAttachments(2, files));
    const s3 = new S3BlobStore({ bucket: 'mail', prefix: 'p/', endpoint: 'http://127.0.0.1:9', region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'AK', secretAccessKey: 'SK' } });
    const before = Date.now();
    const email = await through(webhookAttachments(s3, { mode: 'urls', inlineMaxBytes: 0, urlTtlSeconds: 900 }), s3, delivery);
    await s3.close();
    for (const attachment of email.attachments) {
      const url = new URL(attachment.url!);
      expect(url.pathname).toBe(`/mail/p/sha256/${attachment.sha256.slice(0, 2)}/${attachment.sha256.slice(2, 4)}/${attachment.sha256}`);
      expect(url.searchParams.get('X-Amz-Expires')).toBe('900');
      expect(attachment.contentBase64).toBeUndefined();
    }
    expect(new URL(email.raw!.url!).pathname).toContain(email.raw!.sha256);
    expect(Date.parse(email.urlsExpireAt!)).toBeGreaterThanOrEqual(before + 900_000);
  });
});

describe('a module handler\'s blob errors', () => {
  it('a missing blob thrown on is permanent; a store that does not answer waits', () => {
    expect(outcomeOfThrow(new BlobNotFoundError('sha256:00', '/s'))).toEqual({ status: 'permanent', reason: 'no blob sha256:00 in /s' });
    expect(outcomeOfThrow(new BlobStoreUnavailableError('blob store /s: EIO'))).toEqual({ status: 'retry', kind: 'blob-unavailable', reason: 'blob store /s: EIO' });
  });
});

describe('settings', () => {
  const base = { IMAP_USER: 'a@example.com', SINK_URL: 'http://127.0.0.1:1/hook' };
  it('defaults: whole bodies, attachment URLs, 10 MiB inline, URLs for an hour', () => {
    expect(loadConfig('worker', base).worker).toMatchObject({ bodies: 'whole', maxBodyBytes: 1024 * 1024, webhookAttachments: 'urls', webhookInlineMaxBytes: 10 * 1024 * 1024, blobUrlTtlSeconds: 3600 });
  });
  it('refuses values out of their range, naming the setting', () => {
    for (const [name, value] of [['SINK_BODIES', 'some'], ['WEBHOOK_ATTACHMENTS', 'base64'], ['BLOB_URL_TTL_S', '700000'], ['WEBHOOK_INLINE_MAX_BYTES', '-1']] as const) {
      expect(() => loadConfig('worker', { ...base, [name]: value }), name).toThrow(ConfigError);
      expect(() => loadConfig('worker', { ...base, [name]: value }), name).toThrow(name);
    }
  });
  it('WEBHOOK_ATTACHMENTS=inline without a store stops start-up', async () => {
    const config = loadConfig('worker', { ...base, WEBHOOK_ATTACHMENTS: 'inline' });
    await expect(createSink(config, { concurrency: 1 })).rejects.toThrow(/^WEBHOOK_ATTACHMENTS: .*BLOB_STORE_URL/);
  });
  it('a worker opens the store only for a sink that reads it', async () => {
    const dir = join(tempDir(), 'store');
    mkdirSync(dirname(dir), { recursive: true });
    const env = { ...base, BLOB_STORE_URL: `file://${dir}`, SINK_URL: `file://${join(tempDir(), 'out.jsonl')}` };
    const plainJsonl = await createSink(loadConfig('worker', { ...env, SINK_BODIES: 'inline' }), { concurrency: 1 });
    expect(plainJsonl.kind).toBe('jsonl');
    const wrapped = await createSink(loadConfig('worker', env), { concurrency: 1 });
    // The wrapper says so through check(): a store directory that is a file does not answer.
    writeFileSync(dir, 'x');
    await expect(wrapped.check()).rejects.toThrow('blob store');
    await expect(plainJsonl.check()).resolves.toBeUndefined();
    await Promise.all([plainJsonl.close(), wrapped.close()]);
  });
});
