// One IMAP session of a mailbox, from login to the connection's end: open the mailbox read-only,
// then settle the position, sync new mail and wait for more, over and over. It returns only when
// the runner stops it; anything else that ends it throws, and the runner decides how long to wait.
import type { ImapFlow } from 'imapflow';
import { sleep } from '../core/backoff.ts';
import { DependencyError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { ChangeTracker } from './mailbox-changes.ts';
import type { AccountContext } from './mailbox-context.ts';
import { settlePosition, type OpenedMailbox } from './mailbox-position.ts';
import { syncNewMail } from './mailbox-sync.ts';
import { useIdle, waitForNewMail } from './mailbox-watch.ts';
import { FAILED_STATES, type RunnerStatusBoard } from './runner-status.ts';
import type { SessionFailures } from './session-failure.ts';

export interface SessionDeps {
  ctx: AccountContext;
  mailbox: string;
  /** Lease value fencing the appends; '' with a single producer. */
  fencingToken: string;
  board: RunnerStatusBoard;
  failures: SessionFailures;
  /** TRACK_CHANGES: looks for changes after each sync (it keeps when the last scan was). */
  changes: ChangeTracker;
  log: Logger;
  signal: AbortSignal;
  /** Logs in (through the account's breaker). */
  connect(): Promise<ImapFlow>;
  /** The logged-in client, which the runner logs out or closes when the session ends. */
  onClient(client: ImapFlow): void;
}

const closedByServer = () => new DependencyError('imap-connection', 'IMAP connection closed by the server');

export async function runSession(deps: SessionDeps): Promise<void> {
  const { ctx, mailbox, board, log, signal } = deps;
  const status = board.status;
  // A retry keeps the state of the failure (`auth-failed`, `reconnecting`: /status and /ready
  // say why) until a login succeeds; `connecting` is the first attempt only.
  if (!FAILED_STATES.has(status.state)) board.setState('connecting');
  const conn = await deps.connect();
  deps.onClient(conn);
  status.retryAt = null;
  board.refused(undefined);
  let newMail: () => void = () => undefined;
  let pendingMail = false;
  conn.on('exists', () => { pendingMail = true; newMail(); });
  const changes = deps.changes;
  if (changes.enabled) {
    // A flag changed or a message went while we waited: look now rather than at the next timer.
    // VANISHED (EARLIER) is the answer to our own look, not news.
    conn.on('flags', () => { pendingMail = true; newMail(); });
    conn.on('expunge', (event: { earlier?: boolean }) => { if (!event.earlier) { pendingMail = true; newMail(); } });
  }
  const closed = new Promise<void>((resolve) => conn.once('close', () => resolve()));
  board.setConnected(true);
  board.responded();

  const opened = await conn.mailboxOpen(mailbox, { readOnly: true });
  const box: OpenedMailbox = {
    path: mailbox, uidValidity: String(opened.uidValidity), uidNext: opened.uidNext, highestModseq: opened.highestModseq ? String(opened.highestModseq) : null,
  };
  status.uidValidity = box.uidValidity;
  board.responded();

  const idleMode = useIdle(ctx.settings, conn);
  let via: 'start' | 'idle' | 'recheck' | 'poll' = 'start';
  while (!signal.aborted && conn.usable) {
    board.setState('syncing');
    pendingMail = false;
    const from = await settlePosition(ctx, conn, box, deps.fencingToken);
    status.lastUid = from.lastUid;
    const synced = await syncNewMail(ctx, conn, box, from, deps.fencingToken, {
      signal,
      onResponse: () => board.responded(),
      onBatch: (lastUid) => { status.lastUid = lastUid; deps.failures.progressed(); },
      onPause: (reason) => { status.paused = reason; board.setState(reason ? 'paused' : 'syncing'); },
    });
    if (via === 'start') log.info({ lastUid: synced.lastUid, appended: synced.appended, waitingBy: idleMode ? 'idle' : 'poll' }, 'mailbox in sync: waiting for new mail');
    else if (synced.fetched > 0) log.info({ via, fetched: synced.fetched, appended: synced.appended, lastUid: synced.lastUid }, 'new mail');
    if (changes.enabled && !signal.aborted) {
      const found = await changes.check(conn, box, synced.lastUid, deps.fencingToken, () => board.responded());
      if (found.updated + found.deleted > 0) log.info({ via, ...found }, 'changes to mail already ingested');
    }
    board.polled(Date.now());
    if (!ctx.readOnly) await ctx.redis.hset(ctx.keys.mailbox(mailbox), 'lastPollAt', status.lastPollAt!);
    deps.failures.cleared();
    board.setState(idleMode ? 'idle' : 'polling');
    board.publish();
    if (signal.aborted) break;
    if (pendingMail) { via = idleMode ? 'idle' : 'poll'; continue; }
    const wake = new Promise<void>((resolve) => { newMail = resolve; });
    // A scan of a server without CONDSTORE/QRESYNC comes due like new mail.
    const scanIn = changes.scanDueIn(conn);
    const scanTimer = new AbortController();
    if (Number.isFinite(scanIn)) void sleep(scanIn, AbortSignal.any([signal, scanTimer.signal])).then(() => newMail());
    const reason = await waitForNewMail(conn, mailbox, ctx.settings, { newMail: wake, closed, stop: signal }).finally(() => scanTimer.abort());
    board.responded();
    if (reason === 'closed') throw closedByServer();
    via = !idleMode ? 'poll' : reason === 'new-mail' ? 'idle' : 'recheck';
  }
  // Ending without a stop means the connection went away: back off like any other failure.
  if (!signal.aborted) throw closedByServer();
}
