import type { Command } from 'commander';
import { UsageError } from '../core/errors.ts';
import { action, commandContext } from './run-command.ts';

function positiveInt(value: string, option: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new UsageError(`${option} expects a whole number of at least 1`);
  return Number(value);
}

export function registerBackup(program: Command): void {
  program.command('backup').description('Redis snapshot (BGSAVE copy) and a logical export of streams, groups and mailbox state')
    .option('--out <dir>', 'backup folder', './backups')
    .option('--keep <n>', 'backups of each kind to keep in the folder; older ones are deleted', '14')
    .option('--logical-only', 'skip the BGSAVE + RDB copy')
    .option('--no-blobs', 'skip copying the file blob store into <out>/blobs')
    .option('--json', 'print the report as JSON')
    .action(action(async (options: { out: string; keep: string; logicalOnly?: boolean; blobs: boolean; json?: boolean }, command: Command) => {
      const keep = positiveInt(options.keep, '--keep');
      const { config } = commandContext(command, 'admin');
      const { connectAdminRedis, closeRedis } = await import('../ops/admin-redis.ts');
      const { runBackup } = await import('../ops/backup.ts');
      const { openBlobStore } = await import('../core/blobs/open-store.ts');
      const blobStore = options.blobs ? await openBlobStore(config.blobs.store) : null;
      const redis = await connectAdminRedis(config, 'mailstream:backup');
      try {
        const report = await runBackup({ redis, redisUrl: config.redis.url, prefix: config.prefix, outDir: options.out, keep, logicalOnly: options.logicalOnly, blobStore });
        // The logical export is complete either way; a snapshot that should have worked still fails the run.
        if (!report.snapshot.copied && report.snapshot.failed) process.exitCode = 1;
        // A damaged blob is a loss the operator must hear of (restore it from an older backup).
        if (report.blobs.copied && report.blobs.damaged.length > 0) process.exitCode = 1;
        if (options.json) {
          process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
          return;
        }
        const e = report.export;
        process.stdout.write(`logical export: ${e.file}\n  ${e.keys} keys, ${e.streams} streams, ${e.streamEntries} stream entries, ${e.pendingEntries} pending entries\n`);
        if (e.skipped.length > 0) process.stdout.write(`  not exported (unsupported type): ${e.skipped.join(', ')}\n`);
        process.stdout.write(report.snapshot.copied
          ? `RDB snapshot: ${report.snapshot.file} (copy of ${report.snapshot.source})\n`
          : `RDB snapshot: not copied: ${report.snapshot.reason}\n`);
        const b = report.blobs;
        process.stdout.write(b.copied
          ? `blobs: ${b.dir}\n  ${b.objects} in the store, ${b.newObjects} new copied (${b.newBytes} bytes)\n`
          : `blobs: not copied: ${options.blobs ? b.reason : 'skipped (--no-blobs)'}\n`);
        if (b.copied && b.damaged.length > 0) {
          process.stdout.write(`  ${b.damaged.length} damaged in the store (their bytes do not hash to their ref), not copied: ${b.damaged.slice(0, 20).join(', ')}${b.damaged.length > 20 ? ', ...' : ''}\n`);
        }
        if (report.pruned.length > 0) process.stdout.write(`pruned: ${report.pruned.join(', ')}\n`);
      } finally {
        await closeRedis(redis);
        await blobStore?.close();
      }
    }));
}

export function registerRestore(program: Command): void {
  program.command('restore <file>').description('restore a logical export into Redis')
    .option('--dry-run', 'validate and report, change nothing')
    .option('--force', 'restore into a Redis that already holds mailstream keys')
    .option('--json', 'print the report as JSON')
    .action(action(async (file: string, options: { dryRun?: boolean; force?: boolean; json?: boolean }, command: Command) => {
      const { config } = commandContext(command, 'admin');
      const { connectAdminRedis, closeRedis } = await import('../ops/admin-redis.ts');
      const { runRestore } = await import('../ops/restore.ts');
      const { inspectBackup } = await import('../ops/backup-reader.ts');
      // A damaged file is reported before Redis is even asked.
      const contents = await inspectBackup(file);
      const redis = await connectAdminRedis(config, 'mailstream:restore');
      try {
        const report = await runRestore({ redis, file, contents, prefix: config.prefix, dryRun: options.dryRun, force: options.force });
        if (options.json) {
          process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
          return;
        }
        const c = report.contents;
        const types = Object.entries(c.byType).map(([t, n]) => `${n} ${t}`).join(', ');
        process.stdout.write(`backup ${file}: valid; taken ${c.header.createdAt} from Redis ${c.header.redisVersion}, prefix ${report.fromPrefix}\n`);
        process.stdout.write(`  ${c.keys} keys (${types || 'none'}), ${c.streamEntries} stream entries, ${c.groups} consumer groups, ${c.pendingEntries} pending entries\n`);
        if (report.fromPrefix !== report.toPrefix) process.stdout.write(`  keys move to prefix ${report.toPrefix}\n`);
        if (report.dryRun) {
          process.stdout.write(report.existingKeys > 0
            ? `dry run: target holds ${report.existingKeys} keys under ${report.toPrefix}: a restore needs --force (it replaces the keys in the backup)\n`
            : 'dry run: target is empty under this prefix; nothing was changed\n');
          return;
        }
        process.stdout.write(`restored ${report.restoredKeys} keys, ${report.restoredEntries} stream entries, ${report.restoredPending} pending entries\n`);
        if (report.pendingWithoutEntry > 0) process.stdout.write(`  ${report.pendingWithoutEntry} pending entries not restored: their stream entry was already deleted when the backup was taken\n`);
      } finally {
        await closeRedis(redis);
      }
    }));
}
