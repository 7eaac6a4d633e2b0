// The file store's part of `mailstream backup`: every blob copied into <out>/blobs as loose files,
// `sha256/<2 hex>/<2 hex>/<hex>` (the layout S3 uses too), whatever the store keeps on its own disk
// (pack files): a backup is then readable with nothing but a shell, and `mailstream blob import`
// puts it back into any store (blob-import.ts). Blobs never change (their name is their content's
// hash), so a copy that is there already is skipped and each backup only adds what is new.
// The copy runs after the logical export, so every blob the exported entries refer to was in the
// store before it started.
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { dirname, join } from 'node:path';
import { objectPath, refOf } from '../core/blobs/blob-ref.ts';
import type { BlobStore } from '../core/blobs/blob-store.ts';
import { FileBlobStore } from '../core/blobs/file-store.ts';
import { BlobNotFoundError, MailstreamError } from '../core/errors.ts';

export type BlobBackup =
  | { copied: true; dir: string; objects: number; newObjects: number; newBytes: number; damaged: string[] }
  | { copied: false; reason: string };

export const BLOB_BACKUP_DIR = 'blobs';

export async function backupBlobs(store: BlobStore | null, outDir: string): Promise<BlobBackup> {
  if (!store) return { copied: false, reason: 'no blob store (BLOB_STORE_URL=none)' };
  if (!(store instanceof FileBlobStore)) return { copied: false, reason: `${store.location} is not copied: keep an S3 store with bucket versioning or replication (runbooks/blob-store.md)` };
  const dir = join(outDir, BLOB_BACKUP_DIR);
  const report = { copied: true as const, dir, objects: 0, newObjects: 0, newBytes: 0, damaged: [] as string[] };
  const made = new Set<string>();
  try {
    for await (const blob of store.list()) {
      report.objects += 1;
      const target = join(dir, objectPath(blob.ref));
      const there = await stat(target).catch(() => null);
      if (there && there.size === blob.size) continue;
      if (!made.has(dirname(target))) {
        await mkdir(dirname(target), { recursive: true, mode: 0o700 });
        made.add(dirname(target));
      }
      const copied = await copyBlob(store, blob.ref, target);
      if (copied === 'damaged') report.damaged.push(blob.ref);
      else if (copied) {
        report.newObjects += 1;
        report.newBytes += blob.size;
      }
    }
  } catch (err) {
    throw new MailstreamError('ERR_BACKUP_WRITE', `cannot copy the blob store into ${dir}: ${(err as Error).message}`, { cause: err });
  }
  return report;
}

/**
 * false when the blob left the store since it was listed (`blob gc`): no loss. 'damaged' when its
 * bytes do not hash to its ref: not copied under that name (a backup of it would restore nothing).
 */
async function copyBlob(store: BlobStore, ref: string, target: string): Promise<boolean | 'damaged'> {
  let source;
  try {
    source = await store.open(ref);
  } catch (err) {
    if (err instanceof BlobNotFoundError) return false;
    throw err;
  }
  // Through a temporary name: an interrupted backup never leaves a partial blob under a real name.
  const tmp = `${target}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    const hash = createHash('sha256');
    const hashing = new Transform({ transform(chunk: Buffer, _encoding, done) { hash.update(chunk); done(null, chunk); } });
    await pipeline(source, hashing, createWriteStream(tmp, { mode: 0o600 }));
    if (refOf(hash.digest('hex')) !== ref) {
      await rm(tmp, { force: true });
      return 'damaged';
    }
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return true;
}
