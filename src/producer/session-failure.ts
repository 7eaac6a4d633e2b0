// What a failed IMAP session means for its mailbox: its kind (from the one error table), the
// state it leaves (auth-failed, throttled, over-quota, reconnecting), the metric label, one log
// line per distinct problem, and how long to wait before the next login (reconnect-wait.ts).
import { createBreaker, type Breaker } from '../core/breaker.ts';
import { errorKind, type ErrorKind } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { ImapFlow } from 'imapflow';
import { openConnections, serverAnswer } from './imap-connect.ts';
import type { AccountContext } from './mailbox-context.ts';
import type { FailureStreak } from './reconnect-wait.ts';
import type { RunnerState, RunnerStatusBoard } from './runner-status.ts';

export type ImapBreaker = Breaker<[() => Promise<ImapFlow>], ImapFlow>;

/** The server answered, and said no for a reason of its own: the runner waits as the kind asks, the breaker stays out of it. */
const REFUSALS: ReadonlySet<ErrorKind> = new Set(['imap-auth', 'imap-throttled', 'imap-over-quota']);

/** One breaker per account around logins: while the server keeps failing, runners wait it out. */
export function createImapBreaker(ctx: AccountContext): ImapBreaker {
  return createBreaker('imap', (connect: () => Promise<ImapFlow>) => connect(), { metrics: ctx.metrics, logger: ctx.logger, account: ctx.keys.account },
    { isNeutral: (err) => REFUSALS.has(errorKind(err)), resetTimeoutMs: 30_000 });
}

/** The kind of a failure that ended a session: anything unknown to the error table is the connection's. */
function sessionFailureKind(err: unknown): ErrorKind {
  const kind = errorKind(err);
  return kind === 'unknown' ? 'imap-connection' : kind;
}

/** The metric label of a session failure: `auth`, `throttled`, `over-quota`, `connection`, `uidvalidity`, `breaker-open`, or a Redis kind. */
function failureLabel(err: unknown, kind: ErrorKind): string {
  if ((err as { code?: string }).code === 'EOPENBREAKER') return 'breaker-open';
  return kind.replace(/^imap-/, '');
}

const STATE_OF: Partial<Record<ErrorKind, RunnerState>> = { 'imap-auth': 'auth-failed', 'imap-throttled': 'throttled', 'imap-over-quota': 'over-quota' };

export class SessionFailures {
  private lastLogged = '';
  private readonly ctx: AccountContext;
  private readonly board: RunnerStatusBoard;
  private readonly streak: FailureStreak;
  private readonly log: Logger;

  constructor(deps: { ctx: AccountContext; board: RunnerStatusBoard; streak: FailureStreak; log: Logger }) {
    this.ctx = deps.ctx;
    this.board = deps.board;
    this.streak = deps.streak;
    this.log = deps.log;
  }

  /** A batch went through: the next failure starts a new streak. */
  progressed(): void {
    this.streak.reset();
  }

  /** The mailbox is in sync again: the next failure is news, logged at its level. */
  cleared(): void {
    this.board.status.lastError = null;
    this.lastLogged = '';
    this.streak.reset();
  }

  /** Records a failed session and returns how long to wait before the next login. */
  record(err: unknown): number {
    const { board, streak, log } = this;
    const status = board.status;
    const kind = sessionFailureKind(err);
    // imapflow's refusals say "Command failed": the server's own answer is what helps.
    const message = typeof (err as { responseStatus?: unknown }).responseStatus === 'string' ? `IMAP server answered ${serverAnswer(err)}` : (err as Error).message;
    const wait = streak.next(kind);
    status.lastError = message;
    status.retryAt = Date.now() + wait;
    board.setConnected(false);
    const label = failureLabel(err, kind);
    this.ctx.metrics.imapErrors.inc({ account: this.ctx.keys.account, mailbox: status.mailbox, kind: label });
    board.refused(kind);
    board.setState(STATE_OF[kind] ?? 'reconnecting');
    const detail = { err, kind: label, attempt: streak.attempts, waitMs: wait, retryAt: new Date(status.retryAt).toISOString(), ...(kind === 'imap-throttled' ? { openConnections: openConnections(this.ctx.account) } : {}) };
    // One clear line per distinct problem; repeats while it lasts are debug noise.
    if (message !== this.lastLogged) {
      this.lastLogged = message;
      if (kind === 'imap-auth') log.error(detail, 'authentication failed: retrying with backoff');
      else if (kind === 'imap-throttled') log.warn(detail, 'IMAP server throttles this account: waiting longer before the next login');
      else if (kind === 'imap-over-quota') log.warn(detail, 'IMAP quota used up (bandwidth or download limit): waiting before the next login');
      else log.warn(detail, 'mailbox connection failed: reconnecting with backoff');
    } else {
      log.debug({ kind: label, attempt: streak.attempts, waitMs: wait }, 'still failing');
    }
    return wait;
  }
}
