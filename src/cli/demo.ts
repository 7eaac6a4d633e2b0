import { InvalidArgumentError, type Command } from 'commander';
import { action, ExitRequest } from './run-command.ts';

/** Parses a whole-number option; a bad value is a usage error (exit 2) naming the option. */
export function wholeNumber(min: number) {
  return (value: string): number => {
    if (!/^\d+$/.test(value) || Number(value) < min) throw new InvalidArgumentError(`expected a whole number of at least ${min}`);
    return Number(value);
  };
}

interface DemoFlags { emails: number; live: number; duration?: number; exitWhenDone?: boolean; seed: number }

export function registerDemo(program: Command): void {
  program.command('demo').description('private Redis + Dovecot seeded with sample mail, producer + worker into a JSONL file')
    .option('--emails <n>', 'sample emails seeded into the mailbox', wholeNumber(1), 300)
    .option('--live <n>', 'new emails delivered through IMAP once the seeded ones are through', wholeNumber(0), 5)
    .option('--duration <seconds>', 'stop after this many seconds (default: run until Ctrl-C)', wholeNumber(1))
    .option('--exit-when-done', 'stop once every seeded and live email is in the output file')
    .option('--seed <n>', 'seed of the generated sample mail', wholeNumber(0), 1)
    .addHelpText('after', '\nWrites demo-output/emails.jsonl (and the daemons\' logs) under the current directory.')
    .action(action(async (flags: DemoFlags) => {
      const { join } = await import('node:path');
      const { runDemo } = await import('../ops/demo/run-demo.ts');
      const { runInterruptibly } = await import('../ops/interrupt.ts');
      const result = await runInterruptibly((signal) => runDemo({
        emails: flags.emails,
        live: flags.live,
        durationSeconds: flags.duration,
        exitWhenDone: flags.exitWhenDone === true,
        seed: flags.seed,
        outDir: join(process.cwd(), 'demo-output'),
        out: process.stdout,
        signal,
      }));
      const incomplete = flags.exitWhenDone && (result.delivered < result.expected || result.duplicates > 0);
      if (incomplete) throw new ExitRequest(1, 'mailstream demo: not every email arrived exactly once');
    }));
}
