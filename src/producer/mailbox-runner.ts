// One mailbox, one IMAP connection, one loop: connect, settle the position, sync, wait for new
// mail, repeat; on any failure close, wait as long as that kind of failure asks (reconnect-wait.ts:
// a short backoff for a dropped connection, a long one when the server throttles us, an hour when
// a quota is used up) and start over from the state in Redis, which is always consistent with the
// stream. Runners start and stop individually, so a scale-out coordinator can run exactly the
// mailboxes whose leases it holds. The session itself is mailbox-session.ts, what a failure
// means session-failure.ts, and what the runner shows (/status, metrics, /ready) runner-status.ts.
// Each session holds a slot of its host (connect-slots.ts) and each login waits for the process's
// pacer (connect-limits.ts); when another mailbox waits for the slot, the session ends once the
// mailbox is in sync and the runner looks again after POLL_INTERVAL_MS, in line like the others.
import type { ImapFlow } from 'imapflow';
import { sleep } from '../core/backoff.ts';
import { ConfigError, LeaseLostError } from '../core/errors.ts';
import type { ConnectLimits } from './connect-limits.ts';
import type { HostSlot } from './connect-slots.ts';
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
  /** The process's login pacer and per-host cap; absent, logins wait for nothing (dry-run, tests). */
  limits?: ConnectLimits;
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
  const limits = options.limits;

  const connect = async (): Promise<ImapFlow> => {
    const attempt = () => connectImap(ctx.account, {
      tokens: ctx.tokens,
      pace: limits && (async () => {
        await limits.pace(ctx.account.host, stopper.signal, () => board.queued('connect-rate'));
        board.queued(null);
      }),
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

  /** The session's slot of its host, waited for in line past the cap; undefined when stopped meanwhile. */
  async function takeSlot(onWanted: () => void): Promise<HostSlot | undefined> {
    if (!limits) return { release: () => undefined, wanted: false };
    const slots = limits.slots(ctx.account.host);
    if (slots.full) board.queued('host-cap');
    const slot = await slots.acquire(onWanted, stopper.signal);
    board.queued(null);
    return slot;
  }

  async function run(): Promise<void> {
    while (!stopper.signal.aborted) {
      let wait = 0;
      let failure: unknown;
      // Ended when a waiting mailbox wants the slot and this one is in sync: its turn is over.
      const turn = new AbortController();
      let slot: HostSlot | undefined;
      const handOverWhenInSync = () => {
        const state = board.status.state;
        if (slot?.wanted && (state === 'idle' || state === 'polling')) turn.abort();
      };
      slot = await takeSlot(handOverWhenInSync);
      if (!slot) break;
      board.onState = handOverWhenInSync;
      try {
        await runSession({
          ctx, mailbox, fencingToken: options.fencingToken ?? '', board, failures, changes, log, signal: AbortSignal.any([stopper.signal, turn.signal]),
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
        board.onState = undefined;
        const done = client;
        client = undefined;
        // Said before the logout: a mailbox handing over is never shown logged out in the meantime.
        if (turn.signal.aborted && !stopper.signal.aborted && failure === undefined) {
          board.status.retryAt = Date.now() + ctx.settings.pollIntervalMs;
          board.setState('between-turns');
        }
        board.setConnected(false);
        // LOGOUT only on a healthy connection; a failed one may never answer it.
        if (done && failure === undefined) await done.logout().catch(() => done.close());
        else done?.close();
        // Freed only once the connection is logged out or closed: the host never sees one more than the cap.
        slot.release();
      }
      if (stopper.signal.aborted) break;
      if (turn.signal.aborted && failure === undefined) {
        const rest = ctx.settings.pollIntervalMs;
        log.debug({ restMs: rest }, 'connection handed to a waiting mailbox');
        await sleep(rest, stopper.signal);
        board.status.retryAt = null;
        continue;
      }
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
