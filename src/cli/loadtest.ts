import type { Command } from 'commander';
import { wholeNumber } from './demo.ts';
import { action, commandContext, ExitRequest } from './run-command.ts';

interface LoadtestFlags { emails: number; workers: number; seed: number; json?: boolean }

export function registerLoadtest(program: Command): void {
  program.command('loadtest').description('push N emails through producer and workers; report throughput and latency percentiles')
    .option('--emails <n>', 'emails to send', wholeNumber(1), 1000)
    .option('--workers <n>', 'worker processes', wholeNumber(1), 2)
    .option('--seed <n>', 'seed of the generated mail', wholeNumber(0), 1)
    .option('--json', 'print the report as JSON')
    .addHelpText('after', '\nRuns against a private Redis and Dovecot; with REDIS_URL set, uses that Redis under a key prefix of its own and removes its keys afterwards.')
    .action(action(async (flags: LoadtestFlags, command: Command) => {
      const { env } = commandContext(command, 'admin');
      const { runLoadtest, formatLoadtest } = await import('../ops/loadtest.ts');
      const { runInterruptibly } = await import('../ops/interrupt.ts');
      const report = await runInterruptibly((signal) => runLoadtest({
        emails: flags.emails, workers: flags.workers, seed: flags.seed, redisUrl: env.REDIS_URL || undefined,
        out: flags.json ? process.stderr : process.stdout, signal,
      }));
      process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatLoadtest(report));
      if (report.delivered < report.emails || report.duplicates > 0) throw new ExitRequest(1, 'mailstream loadtest: not every email arrived exactly once');
    }));
}
