import type { Command } from 'commander';
import { NotImplementedError } from '../core/errors.ts';
import { action } from './run-command.ts';

export function registerStatus(program: Command): void {
  program.command('status')
    .description('streams, groups, consumers, lag, pending, DLQ depth, per-mailbox state, breakers')
    .option('--json', 'print JSON instead of tables')
    .action(action(() => { throw new NotImplementedError('status'); }));
}
