// `mailstream blob gc`: removes file-store blobs that are older than --older-than and that no entry
// of any stream or dead-letter queue refers to. Old means not written, and not put again, for that
// long: a put of content already stored refreshes its time, and each removal checks that time in
// the same statement (FileBlobStore.deleteIfOlderThan), so a blob that a producer is about to refer
// to again is never collected. The list of candidates is taken before the refs are read: an entry
// appended meanwhile refers either to a blob too young to be a candidate or to one its put
// refreshed. Removing a blob drops its index row; the space comes back when gc, last, compacts the
// packs that are mostly garbage. S3 has lifecycle rules for this instead (runbooks/blob-store.md).
import type { FileBlobStore } from '../core/blobs/file-store.ts';
import { UsageError } from '../core/errors.ts';
import type { RedisClient } from '../core/redis.ts';
import { referencedBlobs } from './blob-refs.ts';

const UNITS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000 };
/** Younger blobs may belong to a batch being appended right now. */
export const MIN_AGE_MS = 3_600_000;

/** `30d`, `12h`, `90m` in milliseconds. */
export function parseAge(text: string): number {
  const match = /^(\d+)([mhd])$/.exec(text.trim());
  if (!match) throw new UsageError(`--older-than expects a number and a unit (m, h or d), e.g. 30d; got ${text}`);
  const ms = Number(match[1]) * UNITS[match[2]!]!;
  if (ms < MIN_AGE_MS) throw new UsageError(`--older-than must be at least 1h: younger blobs may belong to a batch being appended`);
  return ms;
}

export interface GcReport {
  store: string;
  olderThan: string;
  cutoff: string;
  dryRun: boolean;
  /** Objects in the store. */
  objects: number;
  /** Objects older than the cutoff. */
  old: number;
  /** Old, but an entry still refers to them. */
  keptReferenced: number;
  removed: number;
  removedBytes: number;
  /** Old objects a put refreshed while gc ran. */
  keptRefreshed: number;
  /** Packs rewritten or removed because most of them was garbage (removed objects, crash leftovers). */
  packsCompacted: number;
  /** Disk space those packs gave back. */
  packBytesFreed: number;
  accounts: string[];
  entriesScanned: number;
}

export async function collectGarbage(options: {
  store: FileBlobStore; redis: RedisClient; prefix: string; olderThan: string; dryRun: boolean; now?: Date;
}): Promise<GcReport> {
  const { store, dryRun } = options;
  const now = options.now ?? new Date();
  const cutoff = new Date(now.getTime() - parseAge(options.olderThan));
  let objects = 0;
  const candidates: Array<{ ref: string; size: number }> = [];
  for await (const blob of store.list()) {
    objects += 1;
    if (blob.modifiedAt < cutoff) candidates.push({ ref: blob.ref, size: blob.size });
  }
  const referenced = await referencedBlobs(options.redis, options.prefix);
  const report: GcReport = {
    store: store.location, olderThan: options.olderThan, cutoff: cutoff.toISOString(), dryRun, objects, old: candidates.length,
    keptReferenced: 0, removed: 0, removedBytes: 0, keptRefreshed: 0, packsCompacted: 0, packBytesFreed: 0,
    accounts: referenced.accounts, entriesScanned: referenced.entries,
  };
  for (const blob of candidates) {
    if (referenced.refs.has(blob.ref)) { report.keptReferenced += 1; continue; }
    if (dryRun || await store.deleteIfOlderThan(blob.ref, cutoff)) {
      report.removed += 1;
      report.removedBytes += blob.size;
    } else {
      report.keptRefreshed += 1;
    }
  }
  // A pack not written since the cutoff is no writer's current one (writers move on every 10 min).
  const compacted = await store.compact(cutoff, dryRun);
  report.packsCompacted = compacted.packs;
  report.packBytesFreed = compacted.bytesFreed;
  return report;
}
