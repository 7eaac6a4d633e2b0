import type { Command } from 'commander';
import { NotImplementedError } from '../core/errors.ts';
import { action, commandContext } from './run-command.ts';

export function registerProducer(program: Command): void {
  program.command('producer')
    .description('run the producer daemon: IMAP mailboxes -> Redis stream, until SIGTERM/SIGINT')
    .option('--dry-run', 'fetch and parse, print what would be appended, write nothing')
    .action(action(async (_opts: { dryRun?: boolean }, command: Command) => {
      commandContext(command, 'producer');
      throw new NotImplementedError('producer');
    }));
}
