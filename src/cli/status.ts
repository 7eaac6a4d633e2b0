import type { Command } from 'commander';
import { action, commandContext } from './run-command.ts';

export function registerStatus(program: Command): void {
  program.command('status')
    .description('streams, groups, consumers, lag, pending, DLQ depth, per-mailbox state, breakers')
    .option('--json', 'print JSON instead of tables')
    .action(action(async (options: { json?: boolean }, command: Command) => {
      const { config } = commandContext(command, 'admin');
      const { connectAdminRedis, closeRedis } = await import('../ops/admin-redis.ts');
      const { gatherStatus } = await import('../ops/status.ts');
      const { formatStatus } = await import('../ops/status-format.ts');
      const redis = await connectAdminRedis(config, 'mailstream:status');
      try {
        const report = await gatherStatus(redis, { prefix: config.prefix, account: config.imap.user || undefined });
        process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : formatStatus(report));
      } finally {
        await closeRedis(redis);
      }
    }));
}
