// `producer --dry-run`: one pass over each mailbox from where the producer would start, fetched
// and parsed exactly as for real, printed as JSON lines ({key, email}) instead of appended.
// Redis is only read (the mailbox state), never written.
import type { Writable } from 'node:stream';
import type { Config } from '../config/load.ts';
import { accountKeys } from '../core/keys.ts';
import type { Logger } from '../core/logger.ts';
import { createMetrics } from '../core/metrics.ts';
import type { RedisClient } from '../core/redis.ts';
import type { AccountSettings } from './account.ts';
import { connectImap } from './imap-connect.ts';
import { resolveMailboxes } from './mailbox-directory.ts';
import { settlePosition } from './mailbox-position.ts';
import { syncNewMail } from './mailbox-sync.ts';
import { createParsePool, parseThreadCount } from './parse-pool.ts';
import { createAccountContext } from './account-runners.ts';
import type { Appender } from './stream-append.ts';

export async function dryRun(options: { config: Readonly<Config>; account: AccountSettings; redis: RedisClient; logger: Logger; out: Writable }): Promise<number> {
  const { config, account, redis, logger, out } = options;
  let printed = 0;
  const printer: Appender = {
    async append(batch) {
      for (const entry of batch.entries) {
        out.write(`{"key":${JSON.stringify(entry.key)},"email":${entry.email}}\n`);
        printed += 1;
      }
      return { appended: batch.entries.length, skipped: 0 };
    },
  };
  const pool = createParsePool(parseThreadCount(config.producer.parseThreads), { maxBodyBytes: config.producer.maxBodyBytes });
  const ctx = createAccountContext({ config, account, redis, logger, metrics: createMetrics('producer'), pool, appender: printer, readOnly: true });
  const stop = new AbortController();
  try {
    for (const mailbox of await resolveMailboxes(ctx)) {
      const client = await connectImap(account, { tokens: ctx.tokens, onClient: (c) => c.on('error', () => undefined) });
      try {
        const opened = await client.mailboxOpen(mailbox, { readOnly: true });
        const box = { path: mailbox, uidValidity: String(opened.uidValidity), uidNext: opened.uidNext, highestModseq: null };
        const from = await settlePosition(ctx, client, box, '');
        const result = await syncNewMail(ctx, client, box, from, '', { signal: stop.signal, onResponse: () => undefined, onBatch: () => undefined });
        logger.info({ mailbox, stream: accountKeys(config.prefix, account.account).stream, fromUid: from.lastUid + 1, wouldAppend: result.fetched }, 'dry run: nothing written');
      } finally {
        await client.logout().catch(() => client.close());
      }
    }
  } finally {
    await pool.close();
  }
  return printed;
}
