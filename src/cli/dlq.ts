import type { Command } from 'commander';
import { NotImplementedError } from '../core/errors.ts';
import { action } from './run-command.ts';

export function registerDlq(program: Command): void {
  const dlq = program.command('dlq').description('dead letters: emails no sink accepted');
  dlq.command('list').description('list dead letters, newest first')
    .option('--json', 'print JSON')
    .option('--limit <n>', 'at most this many', '50')
    .action(action(() => { throw new NotImplementedError('dlq list'); }));
  dlq.command('show <id>').description('one dead letter with its error and attempts')
    .action(action(() => { throw new NotImplementedError('dlq show'); }));
  dlq.command('replay [ids...]').description('send dead letters back to the stream for delivery')
    .option('--all', 'replay every dead letter')
    .action(action(() => { throw new NotImplementedError('dlq replay'); }));
  dlq.command('purge').description('delete every dead letter')
    .option('--yes', 'confirm')
    .action(action(() => { throw new NotImplementedError('dlq purge'); }));
}
