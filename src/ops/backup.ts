// `mailstream backup`: a timestamped RDB copy (when Redis is local) and a logical export, in one
// folder, keeping the newest N of each; with a file blob store, its new blobs too (backup-blobs.ts).
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { BlobStore } from '../core/blobs/blob-store.ts';
import { MailstreamError } from '../core/errors.ts';
import type { RedisClient } from '../core/redis.ts';
import { backupBlobs, type BlobBackup } from './backup-blobs.ts';
import { fileTimestamp } from './backup-format.ts';
import { exportLogical, type ExportSummary } from './export.ts';
import { snapshotRdb, type SnapshotResult } from './snapshot.ts';

export interface BackupOptions {
  redis: RedisClient;
  redisUrl: string;
  prefix: string;
  outDir: string;
  /** Backups of each kind kept after this one; older ones are deleted. */
  keep: number;
  /** Skip the RDB copy (logical export only). */
  logicalOnly?: boolean;
  /** The blob store whose blobs to copy (file store only); null or absent: none. */
  blobStore?: BlobStore | null;
  now?: Date;
}

export interface BackupReport {
  export: ExportSummary;
  snapshot: SnapshotResult;
  blobs: BlobBackup;
  pruned: string[];
}

const EXPORT_NAME = /^mailstream-(.+)-(\d{8}T\d{6}(?:\d{3})?Z)\.jsonl\.gz$/;
const RDB_NAME = /^redis-(\d{8}T\d{6}(?:\d{3})?Z)\.rdb$/;

export function exportFileName(prefix: string, stamp: string): string {
  return `mailstream-${prefix}-${stamp}.jsonl.gz`;
}

/** Names of files to delete so that only the newest `keep` of each kind remain (this prefix only). */
export function filesToPrune(names: string[], prefix: string, keep: number): string[] {
  const exports = names.filter((n) => EXPORT_NAME.exec(n)?.[1] === prefix).sort();
  const rdbs = names.filter((n) => RDB_NAME.test(n)).sort();
  const old = (list: string[]) => list.slice(0, Math.max(0, list.length - keep));
  return [...old(exports), ...old(rdbs)];
}

export async function runBackup(options: BackupOptions): Promise<BackupReport> {
  await mkdir(options.outDir, { recursive: true, mode: 0o700 }).catch((err: Error) => {
    throw new MailstreamError('ERR_BACKUP_WRITE', `cannot create the backup folder ${options.outDir}: ${err.message}`, { cause: err });
  });
  const stamp = fileTimestamp(options.now);
  const summary = await exportLogical(options.redis, options.prefix, join(options.outDir, exportFileName(options.prefix, stamp)));
  const snapshot: SnapshotResult = options.logicalOnly
    ? { copied: false, reason: 'skipped (--logical-only)', failed: false }
    : await snapshotRdb(options.redis, options.redisUrl, join(options.outDir, `redis-${stamp}.rdb`));
  const blobs = await backupBlobs(options.blobStore ?? null, options.outDir);
  const pruned = filesToPrune(await readdir(options.outDir), options.prefix, options.keep);
  for (const name of pruned) await rm(join(options.outDir, name), { force: true });
  return { export: summary, snapshot, blobs, pruned };
}
