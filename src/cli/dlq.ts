// `mailstream dlq list|show|replay|purge`: the dead letters of the account IMAP_USER names.
import type { Command } from 'commander';
import { ConfigError, UsageError } from '../core/errors.ts';
import { action, commandContext, ExitRequest } from './run-command.ts';

/** The account named by --account, else the only one configured (IMAP_USER or a one-entry accounts file). */
function pickAccount(accounts: readonly string[], chosen: string | undefined): string {
  if (chosen !== undefined) {
    if (accounts.length > 0 && !accounts.includes(chosen)) throw new UsageError(`--account ${chosen} is not configured (configured: ${accounts.join(', ')})`);
    return chosen;
  }
  if (accounts.length === 1) return accounts[0]!;
  if (accounts.length === 0) throw new ConfigError('IMAP_USER', 'required for dlq (the account whose dead letters to handle), or pass --account');
  throw new UsageError(`several accounts are configured: pass --account (one of ${accounts.join(', ')})`);
}

async function open(command: Command) {
  const { config } = commandContext(command, 'admin');
  const account = pickAccount(config.accounts.map((a) => a.id), command.parent?.opts<{ account?: string }>().account);
  const [{ createRedis, closeRedis }, { accountKeys }, dl] = await Promise.all([
    import('../core/redis.ts'), import('../core/keys.ts'), import('../worker/dead-letters.ts'),
  ]);
  const redis = createRedis({ url: config.redis.url, clusterNodes: config.redis.clusterNodes, name: 'mailstream:dlq', maxRetriesPerRequest: 2 });
  return { redis, keys: accountKeys(config.prefix, account), dl, close: () => closeRedis(redis) };
}

function excerpt(text: string, max: number): string {
  const one = text.replace(/\s+/g, ' ');
  return one.length > max ? `${one.slice(0, max - 1)}…` : one;
}

export function registerDlq(program: Command): void {
  const dlq = program.command('dlq').description('dead letters: emails no sink accepted')
    .option('--account <id>', 'the account whose DLQ to use (default: the only one configured)');

  dlq.command('list').description('list dead letters, newest first')
    .option('--json', 'print JSON')
    .option('--limit <n>', 'at most this many', '50')
    .action(action(async (opts: { json?: boolean; limit: string }, command: Command) => {
      const limit = Number(opts.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit expects a whole number of at least 1');
      const { redis, keys, dl, close } = await open(command);
      try {
        const letters = await dl.listDeadLetters(redis, keys, limit);
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(letters.map(({ email: _email, ...rest }) => rest), null, 2)}\n`);
          return;
        }
        if (letters.length === 0) { process.stdout.write('no dead letters\n'); return; }
        for (const l of letters) {
          process.stdout.write(`${l.id}  ${l.reason}  attempts=${l.attempts}  ${l.lastFailureAt}  key=${excerpt(l.key, 60)}\n    ${excerpt(l.error, 160)}\n`);
        }
      } finally {
        await close();
      }
    }));

  dlq.command('show <id>').description('one dead letter with its error and attempts')
    .action(action(async (id: string, _opts: object, command: Command) => {
      const { redis, keys, dl, close } = await open(command);
      try {
        const letter = await dl.showDeadLetter(redis, keys, id);
        if (!letter) throw new ExitRequest(1, `mailstream: no dead letter ${id}`);
        let email: unknown = letter.email;
        try { email = JSON.parse(letter.email); } catch { /* shown as stored */ }
        process.stdout.write(`${JSON.stringify({ ...letter, email }, null, 2)}\n`);
      } finally {
        await close();
      }
    }));

  dlq.command('replay [ids...]').description('send dead letters back to the stream for delivery')
    .option('--all', 'replay every dead letter')
    .action(action(async (ids: string[], opts: { all?: boolean }, command: Command) => {
      if (opts.all && ids.length > 0) throw new UsageError('give dead-letter ids or --all, not both');
      if (!opts.all && ids.length === 0) throw new UsageError('give the dead-letter ids to replay, or --all');
      const { redis, keys, dl, close } = await open(command);
      try {
        const targets = opts.all ? await dl.allDeadLetterIds(redis, keys) : ids;
        const results = await dl.replayDeadLetters(redis, keys, targets);
        const missing = results.filter((r) => r.entryId === null);
        for (const r of results) {
          process.stdout.write(r.entryId ? `${r.id} -> stream entry ${r.entryId}\n` : `${r.id}: no such dead letter\n`);
        }
        process.stdout.write(`replayed ${results.length - missing.length} dead letter(s)\n`);
        if (missing.length > 0) throw new ExitRequest(1);
      } finally {
        await close();
      }
    }));

  dlq.command('purge').description('delete every dead letter')
    .option('--yes', 'confirm')
    .action(action(async (opts: { yes?: boolean }, command: Command) => {
      if (!opts.yes) throw new UsageError('purge deletes every dead letter for good: add --yes to confirm');
      const { redis, keys, dl, close } = await open(command);
      try {
        process.stdout.write(`purged ${await dl.purgeDeadLetters(redis, keys)} dead letter(s)\n`);
      } finally {
        await close();
      }
    }));
}
