// What the blob store suites share: an S3 API server on loopback (started once per file when a
// suite asks for one), scratch directories and store clients, all gone when the file's tests end;
// and reading a blob back whole.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll } from 'vitest';
import type { BlobStore } from '../../src/core/blobs/blob-store.ts';
import { FileBlobStore } from '../../src/core/blobs/file-store.ts';
import { S3BlobStore } from '../../src/core/blobs/s3-store.ts';
import { S3_CREDENTIALS, startS3Server, type S3Server } from './s3-server.ts';

export interface BlobTestbed {
  /** The S3 server (only with `{ s3: true }`). */
  readonly s3: S3Server;
  tempDir(name: string): string;
  /** Closed when the file's tests end. */
  track<T extends BlobStore>(store: T): T;
  fileStore(dir?: string): FileBlobStore;
  s3Store(prefix: string): S3BlobStore;
}

export function useBlobTestbed(options: { s3?: boolean } = {}): BlobTestbed {
  let s3: S3Server | undefined;
  const dirs: string[] = [];
  const stores: BlobStore[] = [];
  if (options.s3) beforeAll(async () => { s3 = await startS3Server(); });
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await s3?.destroy();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });
  const testbed: BlobTestbed = {
    get s3() {
      if (!s3) throw new Error('useBlobTestbed({ s3: true }) starts the S3 server');
      return s3;
    },
    tempDir(name) {
      const dir = mkdtempSync(join(tmpdir(), `ms-${name}-`));
      dirs.push(dir);
      return dir;
    },
    track(store) {
      stores.push(store);
      return store;
    },
    fileStore: (dir = testbed.tempDir('blobs')) => testbed.track(new FileBlobStore({ dir })),
    s3Store: (prefix) => testbed.track(new S3BlobStore({ bucket: testbed.s3.bucket, prefix, endpoint: testbed.s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3_CREDENTIALS })),
  };
  return testbed;
}

export async function streamBytes(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A blob's bytes, read back through the store. */
export async function blobBytes(store: BlobStore, ref: string): Promise<Buffer> {
  return streamBytes(await store.open(ref));
}
