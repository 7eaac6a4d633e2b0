// The blob store's contract, run against both backends: a directory (file store) and an S3 API
// server on loopback (s3rver). Content-addressed: the same bytes are stored once under
// sha256:<hex>; streamed content is hashed on the way; a store that does not answer fails typed.
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, statfsSync, utimesSync, writeFileSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { objectPath } from '../../src/core/blobs/blob-ref.ts';
import type { BlobStore } from '../../src/core/blobs/blob-store.ts';
import { FileBlobStore, INDEX_FILE, PACK_DIR, packBytes, RECORD_HEADER_BYTES } from '../../src/core/blobs/file-store.ts';
import type { S3BlobStore } from '../../src/core/blobs/s3-store.ts';
import { BlobNotFoundError, BlobStoreUnavailableError } from '../../src/core/errors.ts';
import { streamBytes, useBlobTestbed } from '../helpers/blob-testbed.ts';
import { runCli } from '../helpers/cli.ts';

const testbed = useBlobTestbed({ s3: true });
const fileStore = (): FileBlobStore => testbed.fileStore();
const s3Store = (prefix = `p-${randomBytes(3).toString('hex')}/`): S3BlobStore => testbed.s3Store(prefix);

const sha = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

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
    expect(await streamBytes(await store.open(first.ref))).toEqual(data);
    expect(await store.stat(first.ref)).toMatchObject({ ref: first.ref, size: data.length });
    expect(await listed(store)).toEqual([first.ref]);
  });

  it('streams 12 MB in (hashing on the way, multipart on S3) and knows it is there on the next put', async () => {
    const store = make();
    const data = randomBytes(12 * 1024 * 1024);
    const streamed = await store.putStream(chunked(data, 512 * 1024));
    expect(streamed).toMatchObject({ ref: `sha256:${sha(data)}`, size: data.length, created: true });
    expect(sha(await streamBytes(await store.open(streamed.ref)))).toBe(sha(data));
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
    expect((await streamBytes(await store.open(empty.ref))).length).toBe(0);
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
    for (const [i, content] of small.entries()) expect(await streamBytes(await store.open(puts[i]!.ref))).toEqual(content);
    expect(puts[20]!.ref).toBe(puts[0]!.ref);
    expect(sha(await streamBytes(await store.open(puts[21]!.ref)))).toBe(sha(large));
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
    await testbed.s3.stop();
    try {
      await expect(store.put(Buffer.from('while down'))).rejects.toBeInstanceOf(BlobStoreUnavailableError);
      await expect(store.putStream(chunked(randomBytes(9 * 1024 * 1024), 1024 * 1024))).rejects.toBeInstanceOf(BlobStoreUnavailableError);
      await expect(store.probe()).rejects.toBeInstanceOf(BlobStoreUnavailableError);
    } finally {
      await testbed.s3.start();
    }
    await expect(store.probe()).resolves.toBeUndefined();
    expect((await store.put(Buffer.from('after'))).created).toBe(true);
  });
});

describe('file store specifics', () => {
  /** The store's index, as another process sees it (the on-disk format). */
  function index(store: FileBlobStore): DatabaseSync {
    const db = new DatabaseSync(join(store.location, INDEX_FILE));
    db.exec('PRAGMA busy_timeout = 5000');
    return db;
  }

  /** Makes every object look last put at `when`, and every pack last written then. */
  function age(store: FileBlobStore, when: Date): void {
    const db = index(store);
    db.prepare('UPDATE objects SET put_at = ?').run(when.getTime());
    db.close();
    for (const name of readdirSync(join(store.location, PACK_DIR))) utimesSync(join(store.location, PACK_DIR, name), when, when);
  }

  /** Another store on the same directory (another process, in production). */
  function sameDir(store: FileBlobStore): FileBlobStore {
    return testbed.track(new FileBlobStore({ dir: store.location }));
  }

  const packs = (store: FileBlobStore) => readdirSync(join(store.location, PACK_DIR)).filter((n) => n.endsWith('.pack')).sort();

  it('objects go to a pack file with an index, not one file each', async () => {
    const store = fileStore();
    const contents = Array.from({ length: 50 }, (_, i) => Buffer.from(`mail ${i}`));
    const puts = await Promise.all(contents.map((c) => store.put(c, { durable: false })));
    await store.flush(puts.map((p) => p.ref));
    expect(packs(store)).toHaveLength(1);
    expect(readdirSync(store.location).sort()).toEqual([INDEX_FILE, `${INDEX_FILE}-shm`, `${INDEX_FILE}-wal`, PACK_DIR].sort());
    // Each record carries its size and hash: a pack can be read (and an index rebuilt) without the index.
    const pack = readFileSync(join(store.location, PACK_DIR, packs(store)[0]!));
    expect(pack.subarray(0, 4).toString('latin1')).toBe('MSB1');
    expect(pack.subarray(16, RECORD_HEADER_BYTES).toString('hex')).toBe(puts[0]!.sha256);
    expect(packBytes(store.location)).toBe(contents.reduce((sum, c) => sum + RECORD_HEADER_BYTES + c.length, 0));
  });

  it('a put of content already there refreshes an old time; deleteIfOlderThan keeps what was refreshed', async () => {
    const store = fileStore();
    const { ref } = await store.put(Buffer.from('old mail'));
    const past = new Date(Date.now() - 40 * 86_400_000);
    age(store, past);
    const cutoff = new Date(Date.now() - 30 * 86_400_000);
    expect((await store.put(Buffer.from('old mail'))).created).toBe(false);
    expect((await store.stat(ref))!.modifiedAt.getTime()).toBeGreaterThan(cutoff.getTime());
    expect(await store.deleteIfOlderThan(ref, cutoff)).toBe(false);
    age(store, past);
    expect(await store.deleteIfOlderThan(ref, cutoff)).toBe(true);
    expect(await store.stat(ref)).toBeNull();
    // Gone from the index, its content is written anew by the next put.
    expect((await store.put(Buffer.from('old mail'))).created).toBe(true);
    expect(await streamBytes(await store.open(ref))).toEqual(Buffer.from('old mail'));
  });

  it('compaction rewrites a pack that is mostly garbage; readers find the objects kept, a reader already reading reads on', async () => {
    const store = fileStore();
    const keep = randomBytes(2000);
    const drop = Array.from({ length: 10 }, () => randomBytes(2000));
    const kept = await store.put(keep);
    const dropped = await Promise.all(drop.map((d) => store.put(d)));
    await store.close();
    const past = new Date(Date.now() - 2 * 86_400_000);
    const cutoff = new Date(Date.now() - 86_400_000);
    age(store, past);
    for (const d of dropped) expect(await store.deleteIfOlderThan(d.ref, cutoff)).toBe(true);
    const before = packs(store);
    const reading = await store.open(kept.ref);

    const gc = sameDir(store);
    const dry = await gc.compact(cutoff, true);
    expect(dry).toEqual({ packs: 1, bytesFreed: drop.length * (RECORD_HEADER_BYTES + 2000) });
    expect(packs(store)).toEqual(before);
    expect(await gc.compact(cutoff, false)).toEqual(dry);
    expect(packs(store)).not.toContain(before[0]);
    expect(await streamBytes(reading)).toEqual(keep);
    expect(await streamBytes(await store.open(kept.ref))).toEqual(keep);
    expect(await listed(store)).toEqual([kept.ref]);
    expect(packBytes(store.location)).toBe(RECORD_HEADER_BYTES + 2000);
    // A pack mostly referenced is left alone.
    age(store, past);
    expect(await gc.compact(cutoff, false)).toEqual({ packs: 0, bytesFreed: 0 });
  });

  it('what a crash left (appended, never flushed) is garbage to compaction; a pack written since the cutoff is not touched', async () => {
    const store = fileStore();
    const durable = await store.put(Buffer.from('flushed'));
    // Large enough to reach the file at once (small records wait in memory for their flush).
    const unflushed = randomBytes(2 * 1024 * 1024);
    await store.put(unflushed, { durable: false });
    await store.close();
    const old = packs(store);
    age(store, new Date(Date.now() - 2 * 86_400_000));
    const young = await sameDir(store).put(Buffer.from('young'));
    const gc = sameDir(store);
    expect(await gc.stat(`sha256:${sha(unflushed)}`)).toBeNull();
    expect(await gc.compact(new Date(Date.now() - 86_400_000), false)).toEqual({ packs: 1, bytesFreed: RECORD_HEADER_BYTES + unflushed.length });
    expect(packs(store).filter((name) => old.includes(name))).toEqual([]);
    expect(await listed(gc)).toEqual([durable.ref, young.ref].sort());
    expect(await streamBytes(await gc.open(durable.ref))).toEqual(Buffer.from('flushed'));
    expect(packBytes(store.location)).toBe(RECORD_HEADER_BYTES * 2 + 'flushed'.length + 'young'.length);
  });

  it('a batch whose pack was compacted before its flush fails the flush, and is written anew', async () => {
    const store = fileStore();
    const content = Buffer.from('appended an hour ago, flushed only now');
    const { ref } = await store.put(content, { durable: false });
    age(store, new Date(Date.now() - 2 * 86_400_000));
    const gc = sameDir(store);
    expect((await gc.compact(new Date(Date.now() - 86_400_000), false)).packs).toBe(1);
    await expect(store.flush([ref])).rejects.toBeInstanceOf(BlobStoreUnavailableError);
    expect((await store.put(content, { durable: false })).created).toBe(true);
    await store.flush([ref]);
    expect(await streamBytes(await gc.open(ref))).toEqual(content);
  });

  it('a full disk fails the flush typed, indexes nothing of it, and once there is room the content is written anew', async () => {
    // A filesystem of its own, 1 MiB, so filling it touches nothing else (the tests run as root).
    const mountPoint = testbed.tempDir('full-disk');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mountPoint]);
    try {
      const store = testbed.fileStore(join(mountPoint, 'store'));
      await store.put(Buffer.from('written while there was room'));
      const ballast = join(mountPoint, 'ballast');
      // Whatever is left but 100 KiB; the next object needs 400 KiB.
      writeFileSync(ballast, Buffer.alloc(Math.max(0, statfsSync(mountPoint).bavail * statfsSync(mountPoint).bsize - 100 * 1024)));
      const content = randomBytes(400 * 1024);
      const { ref } = await store.put(content, { durable: false });
      const full = store.flush([ref]);
      await expect(full).rejects.toBeInstanceOf(BlobStoreUnavailableError);
      await expect(full).rejects.toThrow(/ENOSPC/);
      expect(await store.stat(ref)).toBeNull();
      await expect(store.flush([ref])).rejects.toThrow(/was not stored/);
      rmSync(ballast);
      expect((await store.put(content, { durable: false })).created).toBe(true);
      await store.flush([ref]);
      expect(await streamBytes(await sameDir(store).open(ref))).toEqual(content);
      await store.close();
    } finally {
      execFileSync('umount', ['-l', mountPoint]);
    }
  });

  it('a blob from before pack files (a loose file at sha256/<2>/<2>/<hex>) is still read, and blob import moves it into a pack', async () => {
    const store = fileStore();
    await store.put(Buffer.from('a packed blob'));
    const old = Buffer.from('written by the file store of an earlier release');
    const ref = `sha256:${sha(old)}`;
    const loose = join(store.location, objectPath(ref));
    mkdirSync(dirname(loose), { recursive: true });
    writeFileSync(loose, old);
    expect(await streamBytes(await store.open(ref))).toEqual(old);
    expect(await store.stat(ref)).toBeNull();
    const run = await runCli(['blob', 'import', store.location], { BLOB_STORE_URL: `file://${store.location}`, LOG_LEVEL: 'warn' });
    expect(run.code, run.stderr).toBe(0);
    expect(await store.stat(ref)).toMatchObject({ size: old.length });
    rmSync(join(store.location, 'sha256'), { recursive: true });
    expect(await streamBytes(await store.open(ref))).toEqual(old);
  });

  it('flush refuses a ref that was never stored: a barrier never vouches for a missing object', async () => {
    const store = fileStore();
    const { ref } = await store.put(Buffer.from('stored'), { durable: false });
    const missing = `sha256:${'1'.repeat(64)}`;
    await expect(store.flush([ref, missing])).rejects.toBeInstanceOf(BlobStoreUnavailableError);
    await expect(store.flush([ref])).resolves.toBeUndefined();
  });

  it('a directory it cannot write fails puts and probes with BlobStoreUnavailableError', async () => {
    const dir = testbed.tempDir('blobs');
    writeFileSync(join(dir, 'not-a-dir'), '');
    const store = new FileBlobStore({ dir: join(dir, 'not-a-dir') });
    await expect(store.put(Buffer.from('x'))).rejects.toBeInstanceOf(BlobStoreUnavailableError);
    await expect(store.probe()).rejects.toBeInstanceOf(BlobStoreUnavailableError);
  });
});
