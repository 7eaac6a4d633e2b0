// The mailboxes of one account as the producer reads them: the names of IMAP_MAILBOXES (or the
// accounts file), with each pattern (`*`, `Archive/*`) replaced by what the server lists. Listing
// needs a login, so it runs in the background: at start (again and again with backoff until the
// server answers) and then every LIST_INTERVAL_MS, so a folder created later is picked up and one
// deleted is let go. Plain names are known at once and never wait for the server.
import { backoffDelay, sleep } from '../core/backoff.ts';
import { connectImap } from './imap-connect.ts';
import { connectionBudgetProblem } from './account.ts';
import type { AccountContext } from './mailbox-context.ts';
import { isPattern, selectMailboxes, type ListedMailbox } from './mailbox-selection.ts';

const LIST_INTERVAL_MS = 10 * 60_000;

export interface MailboxDirectory {
  /** The mailboxes to read now. */
  mailboxes(): string[];
  start(): void;
  stop(): Promise<void>;
  /** Why the account's mailboxes are not (all) read, or undefined. */
  notReadyReason(): string | undefined;
}

async function listServer(ctx: AccountContext): Promise<ListedMailbox[]> {
  const client = await connectImap(ctx.account, { tokens: ctx.tokens, onClient: (c) => c.on('error', () => undefined) });
  try {
    const listed = await client.list();
    return listed.map((box) => ({ path: box.path, delimiter: box.delimiter, flags: box.flags, specialUse: box.specialUse }));
  } finally {
    await client.logout().catch(() => client.close());
  }
}

/** The mailboxes to read, listed once (the dry run's way; the daemon keeps a directory). */
export async function resolveMailboxes(ctx: AccountContext): Promise<string[]> {
  const wanted = ctx.account.mailboxes;
  return wanted.some(isPattern) ? selectMailboxes(wanted, await listServer(ctx)) : [...wanted];
}

export function createMailboxDirectory(ctx: AccountContext, onChange: (mailboxes: string[]) => void, intervalMs = LIST_INTERVAL_MS): MailboxDirectory {
  const wanted = ctx.account.mailboxes;
  const log = ctx.logger.child({ mailboxes: wanted.join(',') });
  let current = wanted.filter((name) => !isPattern(name));
  let problem: string | undefined = current.length < wanted.length ? 'listing the server\'s mailboxes' : undefined;
  const stopper = new AbortController();
  let loop: Promise<void> | undefined;

  async function refresh(): Promise<void> {
    const chosen = selectMailboxes(wanted, await listServer(ctx));
    // One connection each: past the account's budget the first ones are read, and /ready says so.
    const overBudget = connectionBudgetProblem(ctx.account, chosen.length);
    const kept = overBudget ? chosen.slice(0, ctx.account.maxConnections) : chosen;
    if (overBudget && problem !== overBudget) log.error({ matched: chosen.length, reading: kept }, `IMAP_MAILBOXES: ${overBudget}; reading the first ${kept.length}`);
    problem = overBudget && `IMAP_MAILBOXES: ${overBudget}`;
    if (kept.join('\n') === current.join('\n')) return;
    log.info({ added: kept.filter((m) => !current.includes(m)), removed: current.filter((m) => !kept.includes(m)) }, 'mailboxes to read');
    current = kept;
    onChange(kept);
  }

  async function run(): Promise<void> {
    let failures = 0;
    let listedOnce = false;
    while (!stopper.signal.aborted) {
      try {
        await refresh();
        failures = 0;
        listedOnce = true;
        await sleep(intervalMs, stopper.signal);
      } catch (err) {
        failures += 1;
        if (stopper.signal.aborted) break;
        // Once listed, a failed listing keeps what was read; before, nothing of the patterns is read.
        if (!listedOnce) problem = `listing the server's mailboxes failed: ${(err as Error).message}`;
        log.warn({ err, attempt: failures }, 'mailboxes not listed; trying again');
        await sleep(backoffDelay(failures, { baseMs: ctx.settings.reconnectBaseMs, maxMs: ctx.settings.reconnectMaxMs, jitter: 0.3 }), stopper.signal);
      }
    }
  }

  return {
    mailboxes: () => [...current],
    start() {
      if (current.length === wanted.length) return; // plain names only: nothing to list
      loop ??= run();
    },
    async stop() {
      stopper.abort();
      await loop;
    },
    notReadyReason: () => problem && `imap ${ctx.account.account}: ${problem}`,
  };
}
