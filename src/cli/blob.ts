// `mailstream blob get|stat|check|gc|import|reindex`: the blob store BLOB_STORE_URL names (raw messages,
// attachments, long bodies the entries point at with `sha256:<hex>` refs).
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import type { Config } from '../config/load.ts';
import type { BlobStore } from '../core/blobs/blob-store.ts';
import { ConfigError, UsageError } from '../core/errors.ts';
import { action, commandContext, ExitRequest } from './run-command.ts';

async function openStore(config: Readonly<Config>): Promise<BlobStore> {
  const { openBlobStore } = await import('../core/blobs/open-store.ts');
  const store = await openBlobStore(config.blobs.store);
  if (!store) throw new ConfigError('BLOB_STORE_URL', 'is none: there is no blob store to read (set it to the producer\'s file:// or s3:// URL)');
  return store;
}

async function checkedRef(ref: string): Promise<string> {
  const { isRef } = await import('../core/blobs/blob-ref.ts');
  if (!isRef(ref)) throw new UsageError(`not a blob ref: ${ref} (expected sha256:<64 hex digits>, as in an entry's raw.ref, textRef, htmlRef or attachments[].ref)`);
  return ref;
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

export function registerBlob(program: Command): void {
  const blob = program.command('blob').description('the blob store: raw messages, attachments and long bodies that entries refer to');

  blob.command('get <ref>').description('write one blob to stdout or a file, checking its sha256')
    .option('-o, --output <file>', 'write to this file instead of stdout')
    .action(action(async (ref: string, opts: { output?: string }, command: Command) => {
      await checkedRef(ref);
      const { config } = commandContext(command, 'admin');
      const store = await openStore(config);
      try {
        const source = await store.open(ref);
        const hash = createHash('sha256');
        source.on('data', (chunk: Buffer) => hash.update(chunk));
        const target = opts.output ? createWriteStream(opts.output, { mode: 0o600 }) : new Writable({
          write(chunk, _encoding, done) { if (process.stdout.write(chunk)) done(); else process.stdout.once('drain', () => done()); },
        });
        await pipeline(source, target);
        // Content-addressed: what came back must hash to its own name.
        const sha = hash.digest('hex');
        if (`sha256:${sha}` !== ref) {
          if (opts.output) await rm(opts.output, { force: true });
          throw new ExitRequest(1, `mailstream: blob ${ref} in ${store.location} is damaged: its content hashes to sha256:${sha}`);
        }
      } finally {
        await store.close();
      }
    }));

  blob.command('stat [ref]').description('one blob (size, time, path), or without a ref the whole store (objects, bytes)')
    .option('--json', 'print JSON')
    .option('--presign <seconds>', 'S3: add a presigned GET URL valid this long')
    .action(action(async (ref: string | undefined, opts: { json?: boolean; presign?: string }, command: Command) => {
      if (ref !== undefined) await checkedRef(ref);
      const presign = opts.presign === undefined ? undefined : Number(opts.presign);
      if (presign !== undefined && (!Number.isInteger(presign) || presign < 1 || presign > 604_800)) throw new UsageError('--presign expects seconds between 1 and 604800 (7 days)');
      const { config } = commandContext(command, 'admin');
      const store = await openStore(config);
      const { statObject, summarizeStore } = await import('../ops/blob-stat.ts');
      try {
        if (ref !== undefined) {
          if (presign !== undefined && !store.presignGet) throw new UsageError('--presign needs an s3:// store');
          const stat = await statObject(store, ref, presign);
          process.stdout.write(opts.json ? `${JSON.stringify(stat, null, 2)}\n`
            : `${stat.ref}\n  size ${stat.size} bytes, written ${stat.modifiedAt}\n  ${stat.location.replace(/\/$/, '')}/${stat.path}${stat.offset !== undefined ? ` at byte ${stat.offset}` : ''}\n${stat.url ? `  ${stat.url}\n` : ''}`);
          return;
        }
        const summary = await summarizeStore(store);
        process.stdout.write(opts.json ? `${JSON.stringify(summary, null, 2)}\n`
          : `${summary.kind} store ${summary.location}\n  ${summary.objects} objects, ${summary.bytes} bytes (${mib(summary.bytes)})${summary.oldest ? `, written ${summary.oldest} .. ${summary.newest}` : ''}\n`
            + (summary.packBytes !== undefined ? `  pack files take ${mib(summary.packBytes)} on disk (record headers, and garbage until blob gc compacts it)\n` : ''));
      } finally {
        await store.close();
      }
    }));

  blob.command('check').description('check that every blob the stream and DLQ entries of every account refer to is in the store')
    .option('--json', 'print the report as JSON')
    .action(action(async (opts: { json?: boolean }, command: Command) => {
      const { config } = commandContext(command, 'admin');
      const store = await openStore(config);
      const { connectAdminRedis, closeRedis } = await import('../ops/admin-redis.ts');
      const { checkBlobs } = await import('../ops/blob-check.ts');
      const redis = await connectAdminRedis(config, 'mailstream:blob-check');
      try {
        const report = await checkBlobs(store, redis, config.prefix);
        if (opts.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        else {
          process.stdout.write(`${report.store}: ${report.referenced} blobs referenced by ${report.entriesScanned} stream and DLQ entries of ${report.accounts.length} account(s); ${report.missing.length} missing\n`);
          for (const ref of report.missing.slice(0, 50)) process.stdout.write(`  missing ${ref}\n`);
          if (report.missing.length > 50) process.stdout.write(`  ... and ${report.missing.length - 50} more (--json lists all)\n`);
        }
        if (report.missing.length > 0) process.exitCode = 1;
      } finally {
        await closeRedis(redis);
        await store.close();
      }
    }));

  blob.command('gc').description('file store: remove blobs older than --older-than that no stream or DLQ entry refers to, then compact its pack files')
    .requiredOption('--older-than <age>', 'minimum age since the blob was last written, e.g. 30d, 12h (at least 1h)')
    .option('--dry-run', 'report what would be removed, remove nothing')
    .option('--json', 'print the report as JSON')
    .action(action(async (opts: { olderThan: string; dryRun?: boolean; json?: boolean }, command: Command) => {
      const { parseAge, collectGarbage } = await import('../ops/blob-gc.ts');
      parseAge(opts.olderThan);
      const { config } = commandContext(command, 'admin');
      const store = await openStore(config);
      const { FileBlobStore } = await import('../core/blobs/file-store.ts');
      if (!(store instanceof FileBlobStore)) {
        await store.close();
        throw new UsageError(`blob gc is for the file store; for ${store.location} let a lifecycle rule of the bucket expire objects (runbooks/blob-store.md)`);
      }
      const { connectAdminRedis, closeRedis } = await import('../ops/admin-redis.ts');
      const redis = await connectAdminRedis(config, 'mailstream:blob-gc');
      try {
        const report = await collectGarbage({ store, redis, prefix: config.prefix, olderThan: opts.olderThan, dryRun: opts.dryRun ?? false });
        if (opts.json) { process.stdout.write(`${JSON.stringify(report, null, 2)}\n`); return; }
        const verb = report.dryRun ? 'would remove' : 'removed';
        process.stdout.write(`${report.store}: ${report.objects} objects, ${report.old} not written for ${report.olderThan} (before ${report.cutoff})\n`
          + `  ${report.keptReferenced} of those kept: still referenced by the ${report.entriesScanned} stream and DLQ entries of ${report.accounts.length} account(s)\n`
          + (report.keptRefreshed ? `  ${report.keptRefreshed} kept: written again while gc ran\n` : '')
          + `  ${verb} ${report.removed} (${mib(report.removedBytes)}), and ${report.packsCompacted} pack file(s) ${report.dryRun ? `would be compacted (${mib(report.packBytesFreed)} to free)` : `compacted (${mib(report.packBytesFreed)} freed)`}\n`);
      } finally {
        await closeRedis(redis);
        await store.close();
      }
    }));

  blob.command('reindex').description('file store: rebuild what the index (index.sqlite) lacks from the pack files, each record checked against its hash')
    .option('--json', 'print the report as JSON')
    .action(action(async (opts: { json?: boolean }, command: Command) => {
      const { config } = commandContext(command, 'admin');
      const store = await openStore(config);
      const { FileBlobStore } = await import('../core/blobs/file-store.ts');
      try {
        if (!(store instanceof FileBlobStore)) throw new UsageError(`blob reindex is for the file store; ${store.location} has no index to rebuild`);
        const report = await store.reindex();
        if (opts.json) process.stdout.write(`${JSON.stringify({ store: store.location, ...report }, null, 2)}\n`);
        else {
          process.stdout.write(`${store.location}: ${report.records} record(s) in ${report.packs} pack file(s), ${report.added} added to the index`
            + `${report.damaged ? `, ${report.damaged} damaged (not indexed)` : ''}${report.cutShort ? `, ${report.cutShort} pack(s) ending in a partial record` : ''}\n`);
        }
        if (report.damaged > 0) process.exitCode = 1;
      } finally {
        await store.close();
      }
    }));

  blob.command('import <dir>').description('put loose blob files (<dir>/sha256/<2>/<2>/<hex>: a backup\'s blobs folder) into the store, checking each against its name')
    .option('--dry-run', 'report what would be imported, put nothing')
    .option('--json', 'print the report as JSON')
    .action(action(async (dir: string, opts: { dryRun?: boolean; json?: boolean }, command: Command) => {
      const { config } = commandContext(command, 'admin');
      const store = await openStore(config);
      const { importBlobs } = await import('../ops/blob-import.ts');
      try {
        const report = await importBlobs(store, dir, { dryRun: opts.dryRun ?? false });
        if (opts.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        else {
          process.stdout.write(`${report.store}: ${report.files} blob file(s) in ${report.from}\n`
            + `  ${report.dryRun ? 'would import' : 'imported'} ${report.imported} (${mib(report.importedBytes)}), ${report.alreadyThere} already there, ${report.damaged.length} damaged`
            + `${report.ignored ? `, ${report.ignored} other file(s) ignored` : ''}\n`);
          for (const damaged of report.damaged.slice(0, 50)) process.stdout.write(`  damaged ${damaged.path}: its content hashes to ${damaged.actual}\n`);
          if (report.damaged.length > 50) process.stdout.write(`  ... and ${report.damaged.length - 50} more (--json lists all)\n`);
        }
        if (report.damaged.length > 0) process.exitCode = 1;
      } finally {
        await store.close();
      }
    }));
}
