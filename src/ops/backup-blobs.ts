// The file store's part of `mailstream backup`: every blob copied into <out>/blobs with the store's
// own layout. Blobs never change (their name is their content's hash), so a copy that is there
// already is skipped and each backup only adds what is new; a restore copies the folder back.
// The copy runs after the logical export, so every blob the exported entries refer to was in the
// store before it started.
import { copyFile, mkdir, rename, stat } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { objectPath } from '../core/blobs/blob-ref.ts';
import type { BlobStore } from '../core/blobs/blob-store.ts';
import { FileBlobStore } from '../core/blobs/file-store.ts';
import { MailstreamError } from '../core/errors.ts';

export type BlobBackup =
  | { copied: true; dir: string; objects: number; newObjects: number; newBytes: number }
  | { copied: false; reason: string };

export const BLOB_BACKUP_DIR = 'blobs';

export async function backupBlobs(store: BlobStore | null, outDir: string): Promise<BlobBackup> {
  if (!store) return { copied: false, reason: 'no blob store (BLOB_STORE_URL=none)' };
  if (!(store instanceof FileBlobStore)) return { copied: false, reason: `${store.location} is not copied: keep an S3 store with bucket versioning or replication (runbooks/blob-store.md)` };
  const dir = join(outDir, BLOB_BACKUP_DIR);
  const report = { copied: true as const, dir, objects: 0, newObjects: 0, newBytes: 0 };
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
      // Through a temporary name: an interrupted backup never leaves a partial blob under a real name.
      const tmp = `${target}.${randomBytes(4).toString('hex')}.tmp`;
      try {
        await copyFile(store.pathOf(blob.ref), tmp);
      } catch (err) {
        // A blob collected by `blob gc` since it was listed is no loss.
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !await stat(store.pathOf(blob.ref)).catch(() => null)) continue;
        throw err;
      }
      await rename(tmp, target);
      report.newObjects += 1;
      report.newBytes += blob.size;
    }
  } catch (err) {
    throw new MailstreamError('ERR_BACKUP_WRITE', `cannot copy the blob store into ${dir}: ${(err as Error).message}`, { cause: err });
  }
  return report;
}
