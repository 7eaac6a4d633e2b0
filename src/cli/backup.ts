import type { Command } from 'commander';
import { NotImplementedError } from '../core/errors.ts';
import { action } from './run-command.ts';

export function registerBackup(program: Command): void {
  program.command('backup').description('Redis snapshot (BGSAVE copy) and a logical export of streams, groups and mailbox state')
    .option('--out <dir>', 'backup folder', './backups')
    .action(action(() => { throw new NotImplementedError('backup'); }));
}

export function registerRestore(program: Command): void {
  program.command('restore <file>').description('restore a logical export into Redis')
    .option('--dry-run', 'validate and report, change nothing')
    .option('--force', 'restore into a Redis that already holds mailstream keys')
    .action(action(() => { throw new NotImplementedError('restore'); }));
}
