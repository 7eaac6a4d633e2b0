import type { Command } from 'commander';
import { action, commandContext } from './run-command.ts';

export function registerMailbox(program: Command): void {
  const mailbox = program.command('mailbox').description('per-mailbox sync state');
  mailbox.command('reset <mailbox>').description('re-sync a mailbox from a date (dedupe keeps it safe)')
    .requiredOption('--since <date>', 'YYYY-MM-DD')
    .option('--account <account>', 'the account (default IMAP_USER)')
    .action(action(async (name: string, opts: { since: string; account?: string }, command: Command) => {
      const { config } = commandContext(command, 'admin');
      const { UsageError, ConfigError } = await import('../core/errors.ts');
      const account = opts.account ?? config.imap.user;
      if (!account) throw new ConfigError('IMAP_USER', 'required (or --account): the account whose mailbox to reset');
      if (!/^\d{4}-\d{2}-\d{2}$/.test(opts.since) || Number.isNaN(Date.parse(opts.since))) throw new UsageError(`--since: expected a date YYYY-MM-DD, got ${opts.since}`);
      const since = Date.parse(`${opts.since}T00:00:00Z`);
      const { requestMailboxReset } = await import('../producer/mailbox-reset.ts');
      const { createRedis, closeRedis } = await import('../core/redis.ts');
      const redis = createRedis({ url: config.redis.url, clusterNodes: config.redis.clusterNodes, name: 'mailstream:mailbox-reset', maxRetriesPerRequest: 2 });
      try {
        await requestMailboxReset(redis, config.prefix, account, name, since);
      } finally {
        await closeRedis(redis);
      }
      process.stdout.write(`Mailbox ${name} of ${account} will be re-read from ${opts.since}; messages already ingested are skipped. A running producer picks this up at its next check; otherwise at start.\n`);
    }));
}
