// `mailstream blob import <dir>`: puts loose blob files, `<dir>/sha256/<2 hex>/<2 hex>/<hex>`, into
// the configured store. That layout is a backup's `blobs` folder (backup-blobs.ts), a copy of an
// S3 prefix, or a file store from before pack files: importing is how blobs come back after a
// restore and how a file store moves to S3 (back it up, then import the backup with
// BLOB_STORE_URL=s3://...). Every file is checked against its name: the store hashes what it is
// given, and content whose hash is not the file's name is reported as damaged, never counted as
// that blob.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { refOfPath } from '../core/blobs/blob-ref.ts';
import type { BlobStore } from '../core/blobs/blob-store.ts';
import { UsageError } from '../core/errors.ts';

/** Puts in flight at once: an S3 put is a round trip, and one at a time would leave the link idle. */
const CONCURRENCY = 8;
/** Objects put with `durable: false` between flushes: the file store syncs a batch in about the time of one. */
const FLUSH_EVERY = 500;

export interface DamagedBlob {
  /** The file, relative to the folder imported. */
  path: string;
  /** What its content hashes to. */
  actual: string;
}

export interface ImportReport {
  store: string;
  from: string;
  dryRun: boolean;
  /** Blob files found (names of the form sha256/<2>/<2>/<hex>). */
  files: number;
  /** Put into the store (dry run: would be). */
  imported: number;
  importedBytes: number;
  /** In the store already with the same size: not sent again. */
  alreadyThere: number;
  damaged: DamagedBlob[];
  /** Other files below sha256/ (a backup's `.tmp` files left by an interrupted copy). */
  ignored: number;
}

interface BlobFile { ref: string; path: string; relative: string }

export async function importBlobs(store: BlobStore, from: string, options: { dryRun: boolean }): Promise<ImportReport> {
  const root = join(from, 'sha256');
  if (!(await stat(root).catch(() => null))?.isDirectory()) {
    throw new UsageError(`${from} holds no sha256/ folder: give the folder that does, e.g. a backup's blobs folder (/var/backups/mailstream/blobs)`);
  }
  const report: ImportReport = { store: store.location, from, dryRun: options.dryRun, files: 0, imported: 0, importedBytes: 0, alreadyThere: 0, damaged: [], ignored: 0 };
  let unflushed: string[] = [];
  const flush = async () => {
    const batch = unflushed;
    unflushed = [];
    if (batch.length > 0) await store.flush(batch);
  };

  const files = blobFiles(from, report);
  // Workers share one generator: each takes the next file when its previous put is done.
  const worker = async () => {
    for await (const file of files) {
      report.files += 1;
      const size = (await stat(file.path)).size;
      // Asked first rather than left to the put's `created`: S3 sends small content without
      // asking whether it is there, and a re-run of an interrupted import should send nothing twice.
      const there = await store.stat(file.ref);
      if (there && there.size === size) { report.alreadyThere += 1; continue; }
      const result = options.dryRun
        ? { sha256: await sha256Of(file.path), created: true }
        : await store.putStream(createReadStream(file.path), { durable: false });
      if (`sha256:${result.sha256}` !== file.ref) {
        // Never flushed: the file store leaves it unindexed (its pack space is reclaimed by
        // compaction); on S3 it is an object no entry refers to, which the lifecycle rule expires.
        report.damaged.push({ path: file.relative, actual: `sha256:${result.sha256}` });
        continue;
      }
      if (result.created) {
        report.imported += 1;
        report.importedBytes += size;
      } else {
        // Stored by someone else between the look and the put.
        report.alreadyThere += 1;
      }
      if (options.dryRun) continue;
      unflushed.push(file.ref);
      if (unflushed.length >= FLUSH_EVERY) await flush();
    }
  };
  const outcomes = await Promise.allSettled(Array.from({ length: CONCURRENCY }, worker));
  const failed = outcomes.find((o) => o.status === 'rejected');
  if (failed) throw failed.reason;
  await flush();
  report.damaged.sort((a, b) => a.path.localeCompare(b.path));
  return report;
}

/** Every blob file below <from>/sha256, in name order; anything else is counted as ignored. */
async function* blobFiles(from: string, report: ImportReport): AsyncGenerator<BlobFile> {
  const names = async (dir: string) => (await readdir(join(from, dir), { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name));
  for (const first of await names('sha256')) {
    if (!first.isDirectory()) { report.ignored += 1; continue; }
    for (const second of await names(`sha256/${first.name}`)) {
      if (!second.isDirectory()) { report.ignored += 1; continue; }
      for (const file of await names(`sha256/${first.name}/${second.name}`)) {
        const relative = `sha256/${first.name}/${second.name}/${file.name}`;
        const ref = file.isFile() ? refOfPath(relative) : undefined;
        if (!ref) { report.ignored += 1; continue; }
        yield { ref, path: join(from, relative), relative };
      }
    }
  }
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
