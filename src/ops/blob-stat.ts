// `mailstream blob stat`: one object (size, time, where it lives) or, without a ref, the whole
// store (objects, bytes, oldest and newest write; for the file store also what its packs take on
// disk, garbage included, which `blob gc` gives back). A walk of the whole store lists every
// object: on a large bucket it takes a while.
import { relative } from 'node:path';
import type { BlobStore } from '../core/blobs/blob-store.ts';
import { objectPath } from '../core/blobs/blob-ref.ts';
import { FileBlobStore, packBytes } from '../core/blobs/file-store.ts';
import { BlobNotFoundError } from '../core/errors.ts';

export interface StoreSummary {
  kind: BlobStore['kind'];
  location: string;
  objects: number;
  bytes: number;
  oldest: string | null;
  newest: string | null;
  /** File store: the bytes of its pack files (objects, record headers, and garbage until gc). */
  packBytes?: number;
}

export interface ObjectStat {
  ref: string;
  size: number;
  modifiedAt: string;
  /** The object's key below the store's location (S3), or its pack file's path below it (file store). */
  path: string;
  /** File store: where the object's bytes start in its pack. */
  offset?: number;
  location: string;
  /** A presigned GET URL (S3, with --presign). */
  url?: string;
}

export async function summarizeStore(store: BlobStore): Promise<StoreSummary> {
  const summary: StoreSummary = { kind: store.kind, location: store.location, objects: 0, bytes: 0, oldest: null, newest: null };
  let oldest = Infinity;
  let newest = -Infinity;
  for await (const blob of store.list()) {
    summary.objects += 1;
    summary.bytes += blob.size;
    oldest = Math.min(oldest, blob.modifiedAt.getTime());
    newest = Math.max(newest, blob.modifiedAt.getTime());
  }
  if (summary.objects > 0) {
    summary.oldest = new Date(oldest).toISOString();
    summary.newest = new Date(newest).toISOString();
  }
  if (store instanceof FileBlobStore) summary.packBytes = packBytes(store.location);
  return summary;
}

export async function statObject(store: BlobStore, ref: string, presignSeconds?: number): Promise<ObjectStat> {
  const stat = await store.stat(ref);
  if (!stat) throw new BlobNotFoundError(ref, store.location);
  const url = presignSeconds !== undefined && store.presignGet ? await store.presignGet(ref, presignSeconds) : undefined;
  const packed = store instanceof FileBlobStore ? store.locate(ref) : null;
  const where = packed ? { path: relative(store.location, packed.path), offset: packed.start } : { path: objectPath(ref) };
  return { ref, size: stat.size, modifiedAt: stat.modifiedAt.toISOString(), ...where, location: store.location, ...(url ? { url } : {}) };
}
