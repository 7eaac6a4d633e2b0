import type { Command } from 'commander';
import { action, commandContext } from './run-command.ts';

export function registerProducer(program: Command): void {
  program.command('producer')
    .description('run the producer daemon: IMAP mailboxes -> Redis stream, until SIGTERM/SIGINT')
    .option('--dry-run', 'fetch and parse, print what would be appended (JSON lines), write nothing')
    .action(action(async (opts: { dryRun?: boolean }, command: Command) => {
      const { config, logger } = commandContext(command, 'producer');
      // Every account: the accounts file's, or the one of IMAP_USER.
      const { accountFromConfig, checkConnectionBudgets } = await import('../producer/account.ts');
      const accounts = config.accounts.map(accountFromConfig);
      checkConnectionBudgets(accounts, config.accountsFile !== undefined);
      if (opts.dryRun) {
        // Entries own stdout; logs go to stderr.
        const { createLogger } = await import('../core/logger.ts');
        const pino = (await import('pino')).default;
        const errLogger = createLogger({ level: config.logLevel, secrets: config.secrets, base: { role: 'producer' }, destination: pino.destination({ fd: 2, sync: true }) });
        const { createRedis, closeRedis } = await import('../core/redis.ts');
        const { dryRun } = await import('../producer/dry-run.ts');
        const redis = createRedis({ url: config.redis.url, clusterNodes: config.redis.clusterNodes, name: 'mailstream:producer:dry-run', logger: errLogger, maxRetriesPerRequest: 3 });
        try {
          for (const account of accounts) await dryRun({ config, account, redis, logger: errLogger, out: process.stdout });
        } finally {
          await closeRedis(redis);
        }
        return;
      }
      const { runDaemon } = await import('../core/daemon.ts');
      const { startLeasedProducer } = await import('../producer/leased-producer.ts');
      await runDaemon({ role: 'producer', config, logger, handleSignals: true, start: (ctx) => startLeasedProducer(ctx, accounts) });
    }));
}
