// The blob store's contract, run against both backends: a directory (file store) and an S3 API
// server on loopback (s3rver). Content-addressed: the same bytes are stored once under
// sha256:<hex>; streamed content is hashed on the way; a store that does not answer fails typed.
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { objectPath } from '../../src/core/blobs/blob-ref.ts';
import type { BlobStore } from '../../src/core/blobs/blob-store.ts';
import { FileBlobStore, TMP_DIR, TMP_PREFIX } from '../../src/core/blobs/file-store.ts';
import { S3BlobStore } from '../../src/core/blobs/s3-store.ts';
import { BlobNotFoundError, BlobStoreUnavailableError } from '../../src/core/errors.ts';
import { S3_CREDENTIALS, startS3Server, type S3Server } from '../helpers/s3-server.ts';

let s3: S3Server;
const dirs: string[] = [];
const stores: BlobStore[] = [];

beforeAll(async () => { s3 = await startS3Server(); });
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await s3?.destroy();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function fileStore(): FileBlobStore {
  const dir = mkdtempSync(join(tmpdir(), 'ms-blobs-'));
  dirs.push(dir);
  const store = new FileBlobStore({ dir });
  stores.push(store);
  return store;
}

function s3Store(prefix = `p-${randomBytes(3).toString('hex')}/`): S3BlobStore {
  const store = new S3BlobStore({ bucket: s3.bucket, prefix, endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3_CREDENTIALS });
  stores.push(store);
  return store;
}

const sha = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

async function bytesOf(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function* chunked(data: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < data.length; offset += size) yield data.subarray(offset, offset + size);
}

async function listed(store: BlobStore): Promise<string[]> {
  const refs: string[] = [];
  for await (const stat of store.list()) refs.push(stat.ref);
  return refs.sort();
}

describe.each([
  { backend: 'file', make: (): BlobStore => fileStore() },
  { backend: 's3', make: (): BlobStore => s3Store() },
])('$backend store', ({ backend, make }) => {
  it('stores content under its sha256 once, and gives it back byte for byte', async () => {
    const store = make();
    const data = Buffer.from('Subject: hello\r\n\r\nbody\r\n');
    const first = await store.put(data);
    expect(first).toEqual({ ref: `sha256:${sha(data)}`, sha256: sha(data), size: data.length, created: true });
    const again = await store.put(Buffer.from(data));
    expect(again.ref).toBe(first.ref);
    if (backend === 'file') expect(again.created).toBe(false);
    expect(await bytesOf(await store.open(first.ref))).toEqual(data);
    expect(await store.stat(first.ref)).toMatchObject({ ref: first.ref, size: data.length });
    expect(await listed(store)).toEqual([first.ref]);
  });

  it('streams 12 MB in (hashing on the way, multipart on S3) and knows it is there on the next put', async () => {
    const store = make();
    const data = randomBytes(12 * 1024 * 1024);
    const streamed = await store.putStream(chunked(data, 512 * 1024));
    expect(streamed).toMatchObject({ ref: `sha256:${sha(data)}`, size: data.length, created: true });
    expect(sha(await bytesOf(await store.open(streamed.ref)))).toBe(sha(data));
    // Large content is looked for before it is sent again (and its time renewed).
    const before = (await store.stat(streamed.ref))!.modifiedAt;
    expect((await store.put(data)).created).toBe(false);
    expect((await store.stat(streamed.ref))!.modifiedAt.getTime()).toBeGreaterThanOrEqual(before.getTime());
    expect((await store.putStream(chunked(data, 1024 * 1024))).created).toBe(false);
    expect(await listed(store)).toEqual([streamed.ref]);
  });

  it('small streamed content and empty content', async () => {
    const store = make();
    const small = Buffer.from('x'.repeat(5000));
    expect((await store.putStream(chunked(small, 1000))).ref).toBe(`sha256:${sha(small)}`);
    const empty = await store.put(new Uint8Array(0));
    expect(empty).toMatchObject({ ref: `sha256:${sha(new Uint8Array(0))}`, size: 0 });
    expect((await bytesOf(await store.open(empty.ref))).length).toBe(0);
  });

  it('a missing ref: open rejects typed, stat is null, delete is false; delete removes', async () => {
    const store = make();
    const missing = `sha256:${'0'.repeat(64)}`;
    await expect(store.open(missing)).rejects.toBeInstanceOf(BlobNotFoundError);
    expect(await store.stat(missing)).toBeNull();
    expect(await store.delete(missing)).toBe(false);
    const { ref } = await store.put(Buffer.from('to delete'));
    expect(await store.delete(ref)).toBe(true);
    expect(await store.stat(ref)).toBeNull();
  });

  it('probe answers while the store takes writes', async () => {
    await expect(make().probe()).resolves.toBeUndefined();
  });

  it('puts with durable: false, made durable together by one flush (the same content twice is one object)', async () => {
    const store = make();
    const small = Array.from({ length: 20 }, (_, i) => Buffer.from(`message ${i}`));
    const large = randomBytes(3 * 1024 * 1024);
    const puts = await Promise.all([
      ...small.map((content) => store.put(content, { durable: false })),
      store.put(Buffer.from(small[0]!), { durable: false }),
      store.putStream(chunked(large, 256 * 1024), { durable: false }),
    ]);
    await store.flush(puts.map((p) => p.ref));
    for (const [i, content] of small.entries()) expect(await bytesOf(await store.open(puts[i]!.ref))).toEqual(content);
    expect(puts[20]!.ref).toBe(puts[0]!.ref);
    expect(sha(await bytesOf(await store.open(puts[21]!.ref)))).toBe(sha(large));
    expect(await listed(store)).toEqual([...new Set(puts.map((p) => p.ref))].sort());
    await expect(store.flush([])).resolves.toBeUndefined();
  });
});

describe('s3 store specifics', () => {
  it('lays objects out like the file store, and presigns a GET anyone can fetch', async () => {
    const store = s3Store('mail-blobs/');
    const data = Buffer.from('<html>hello</html>');
    const { ref } = await store.put(data);
    expect(store.keyOf(ref)).toBe(`mail-blobs/${objectPath(ref)}`);
    const url = await store.presignGet(ref, 60);
    const reply = await fetch(url);
    expect(reply.status).toBe(200);
    expect(Buffer.from(await reply.arrayBuffer())).toEqual(data);
  });

  it('a server that is down fails puts and probes with BlobStoreUnavailableError, and works again when it is back', async () => {
    const store = s3Store();
    await s3.stop();
    try {
      await expect(store.put(Buffer.from('while down'))).rejects.toBeInstanceOf(BlobStoreUnavailableError);
      await expect(store.putStream(chunked(randomBytes(9 * 1024 * 1024), 1024 * 1024))).rejects.toBeInstanceOf(BlobStoreUnavailableError);
      await expect(store.probe()).rejects.toBeInstanceOf(BlobStoreUnavailableError);
    } finally {
      await s3.start();
    }
    await expect(store.probe()).resolves.toBeUndefined();
    expect((await store.put(Buffer.from('after'))).created).toBe(true);
  });
});

describe('file store specifics', () => {
  it('a put of content already there refreshes its time; deleteIfOlderThan keeps what was refreshed', async () => {
    const store = fileStore();
    const { ref } = await store.put(Buffer.from('old mail'));
    const past = new Date(Date.now() - 40 * 86_400_000);
    utimesSync(store.pathOf(ref), past, past);
    const cutoff = new Date(Date.now() - 30 * 86_400_000);
    await store.put(Buffer.from('old mail'));
    expect(await store.deleteIfOlderThan(ref, cutoff)).toBe(false);
    expect(await store.stat(ref)).not.toBeNull();
    utimesSync(store.pathOf(ref), past, past);
    expect(await store.deleteIfOlderThan(ref, cutoff)).toBe(true);
    expect(await store.stat(ref)).toBeNull();
  });

  it('sweeps temporary files a crash left (in tmp/ and beside the objects), not the ones being written', async () => {
    const store = fileStore();
    const { ref } = await store.put(Buffer.from('makes a directory'));
    const beside = dirname(store.pathOf(ref));
    const tmp = join(store.location, TMP_DIR);
    mkdirSync(tmp, { recursive: true });
    const past = new Date(Date.now() - 2 * 86_400_000);
    for (const path of [join(tmp, 'put-left-by-a-crash'), join(beside, `${TMP_PREFIX}left-by-a-crash`)]) {
      writeFileSync(path, 'partial');
      utimesSync(path, past, past);
    }
    writeFileSync(join(tmp, 'put-under-way'), 'partial');
    writeFileSync(join(beside, `${TMP_PREFIX}under-way`), 'partial');
    const cutoff = new Date(Date.now() - 86_400_000);
    expect(await store.sweepTemporary(cutoff, true)).toBe(2);
    expect(await store.sweepTemporary(cutoff, false)).toBe(2);
    expect(await readdir(tmp)).toEqual(['put-under-way']);
    expect((await readdir(beside)).sort()).toEqual([`${TMP_PREFIX}under-way`, ref.slice('sha256:'.length)].sort());
    expect(await listed(store)).toEqual([ref]);
  });

  it('flush refuses a ref that was never stored: a barrier never vouches for a missing object', async () => {
    const store = fileStore();
    const { ref } = await store.put(Buffer.from('stored'), { durable: false });
    const missing = `sha256:${'1'.repeat(64)}`;
    await expect(store.flush([ref, missing])).rejects.toBeInstanceOf(BlobStoreUnavailableError);
    await expect(store.flush([ref])).resolves.toBeUndefined();
  });

  it('a directory it cannot write fails puts and probes with BlobStoreUnavailableError', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ms-blobs-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'not-a-dir'), '');
    const store = new FileBlobStore({ dir: join(dir, 'not-a-dir') });
    await expect(store.put(Buffer.from('x'))).rejects.toBeInstanceOf(BlobStoreUnavailableError);
    await expect(store.probe()).rejects.toBeInstanceOf(BlobStoreUnavailableError);
  });
});
