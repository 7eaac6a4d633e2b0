import type { Command } from 'commander';
import { NotImplementedError } from '../core/errors.ts';
import { action } from './run-command.ts';

export function registerMailbox(program: Command): void {
  const mailbox = program.command('mailbox').description('per-mailbox sync state');
  mailbox.command('reset <mailbox>').description('re-sync a mailbox from a date (dedupe keeps it safe)')
    .requiredOption('--since <date>', 'YYYY-MM-DD')
    .action(action(() => { throw new NotImplementedError('mailbox reset'); }));
}
