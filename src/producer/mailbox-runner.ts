// One mailbox, one IMAP connection, one loop: connect, settle the position, sync, wait for new
// mail, repeat; on any failure close, wait as long as that kind of failure asks (reconnect-wait.ts:
// a short backoff for a dropped connection, a long one when the server throttles us, an hour when
// a quota is used up) and start over from the state in Redis, which is always consistent with the
// stream. Runners start and stop individually, so a scale-out coordinator can run exactly the
// mailboxes whose leases it holds. The session itself is mailbox-session.ts, what a failure
// means session-failure.ts, and what the runner shows (/status, metrics, /ready) runner-status.ts.
import type { ImapFlow } from 'imapflow';
import { sleep } from '../core/backoff.ts';
import { ConfigError, LeaseLostError } from '../core/errors.ts';
import { connectImap } from './imap-connect.ts';
import { ChangeTracker } from './mailbox-changes.ts';
import type { AccountContext } from './mailbox-context.ts';
import { runSession } from './mailbox-session.ts';
import { FailureStreak } from './reconnect-wait.ts';
import { RunnerStatusBoard, type MailboxStatus } from './runner-status.ts';
import { SessionFailures, type ImapBreaker } from './session-failure.ts';

export type { MailboxStatus, RunnerState } from './runner-status.ts';
export { createImapBreaker, type ImapBreaker } from './session-failure.ts';

export interface MailboxRunner {
  readonly mailbox: string;
  start(): void;
  /** Ends the loop: the batch in hand is finished or abandoned (never half-applied), then logout. */
  stop(): Promise<void>;
  status(): MailboxStatus;
  /** Why this mailbox is not ready, or undefined when it is. */
  notReadyReason(now?: number): string | undefined;
}

export interface RunnerOptions {
  /** Lease value to fence appends with (scale-out); '' or absent in single-producer mode. */
  fencingToken?: string;
  /** Told when the lease turned out to be someone else's; the runner has stopped itself. */
  onLeaseLost?: (mailbox: string) => void;
  /** Breaker around IMAP logins, shared by the account's runners. */
  imapBreaker?: ImapBreaker;
}

export function createMailboxRunner(ctx: AccountContext, mailbox: string, options: RunnerOptions = {}): MailboxRunner {
  const log = ctx.logger.child({ mailbox });
  const stopper = new AbortController();
  const board = new RunnerStatusBoard(ctx, mailbox);
  const failures = new SessionFailures({ ctx, board, streak: new FailureStreak(ctx.settings), log });
  const changes = new ChangeTracker(ctx, mailbox);
  let loop: Promise<void> | undefined;
  let client: ImapFlow | undefined;
  let loggingIn: ImapFlow | undefined;

  const connect = async (): Promise<ImapFlow> => {
    const attempt = () => connectImap(ctx.account, {
      tokens: ctx.tokens,
      // QRESYNC reports vanished UIDs with the changes (RFC 7162); only change tracking asks.
      qresync: changes.enabled,
      onClient: (c) => {
        c.on('error', (err: Error) => log.debug({ err }, 'imap connection error'));
        loggingIn = c;
      },
    });
    try {
      return await (options.imapBreaker ? options.imapBreaker.fire(attempt) : attempt());
    } finally {
      loggingIn = undefined;
    }
  };
  // A stop must not wait out a login to a server that does not answer.
  stopper.signal.addEventListener('abort', () => loggingIn?.close(), { once: true });

  async function run(): Promise<void> {
    while (!stopper.signal.aborted) {
      let wait = 0;
      let failure: unknown;
      try {
        await runSession({
          ctx, mailbox, fencingToken: options.fencingToken ?? '', board, failures, changes, log, signal: stopper.signal,
          connect, onClient: (c) => { client = c; },
        });
      } catch (err) {
        failure = err;
        if (err instanceof LeaseLostError) {
          log.warn('lease lost: another producer owns this mailbox now; stopping it here');
          board.setState('lease-lost');
          stopper.abort();
          options.onLeaseLost?.(mailbox);
        } else if (err instanceof ConfigError) {
          // A setting this server cannot honour (FETCH_FILTER's X-GM-RAW elsewhere than Gmail): trying again cannot help.
          log.error({ err }, 'mailbox not read: a setting does not fit this server');
          board.status.lastError = err.message;
          board.setState('misconfigured');
          stopper.abort();
        } else if (!stopper.signal.aborted) {
          wait = failures.record(err);
        }
      } finally {
        const done = client;
        client = undefined;
        board.setConnected(false);
        // LOGOUT only on a healthy connection; a failed one may never answer it.
        if (done && failure === undefined) await done.logout().catch(() => done.close());
        else done?.close();
      }
      if (stopper.signal.aborted) break;
      board.reconnecting();
      await sleep(wait, stopper.signal);
    }
    if (board.status.state !== 'lease-lost' && board.status.state !== 'misconfigured') board.setState('stopped');
  }

  return {
    mailbox,
    start() {
      loop ??= run().catch((err: unknown) => log.error({ err }, 'mailbox runner crashed'));
    },
    async stop() {
      stopper.abort();
      await loop;
    },
    status: () => ({ ...board.status }),
    notReadyReason: (now = Date.now()) => board.notReadyReason(now, options.imapBreaker?.opened ?? false),
  };
}
