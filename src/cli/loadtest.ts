import type { Command } from 'commander';
import { NotImplementedError } from '../core/errors.ts';
import { action } from './run-command.ts';

export function registerLoadtest(program: Command): void {
  program.command('loadtest').description('push N emails through producer and workers; report throughput and latency percentiles')
    .option('--emails <n>', 'emails to send', '1000')
    .option('--workers <n>', 'worker processes', '2')
    .action(action(() => { throw new NotImplementedError('loadtest'); }));
}
