// One mailbox, one IMAP connection, one loop: connect, settle the position, sync, wait for new
// mail, repeat; on any failure close, wait as long as that kind of failure asks (reconnect-wait.ts:
// a short backoff for a dropped connection, a long one when the server throttles us, an hour when
// a quota is used up) and start over from the state in Redis, which is always consistent with the
// stream. Runners start and stop individually, so a scale-out coordinator can run exactly the
// mailboxes whose leases it holds.
import type { ImapFlow } from 'imapflow';
import { sleep } from '../core/backoff.ts';
import { createBreaker, type Breaker } from '../core/breaker.ts';
import { DependencyError, errorKind, LeaseLostError, type ErrorKind } from '../core/errors.ts';
import { connectImap, openConnections, serverAnswer } from './imap-connect.ts';
import { FailureStreak } from './reconnect-wait.ts';
import type { AccountContext } from './mailbox-context.ts';
import { settlePosition, type OpenedMailbox } from './mailbox-position.ts';
import { syncNewMail } from './mailbox-sync.ts';
import { useIdle, waitForNewMail } from './mailbox-watch.ts';

export type RunnerState = 'starting' | 'connecting' | 'syncing' | 'idle' | 'polling' | 'paused' | 'reconnecting' | 'auth-failed' | 'throttled' | 'over-quota' | 'lease-lost' | 'stopped';

/** States a failed login leaves behind until a login succeeds: /status and /ready keep naming the refusal. */
const FAILED_STATES: ReadonlySet<RunnerState> = new Set(['reconnecting', 'auth-failed', 'throttled', 'over-quota']);

export interface MailboxStatus {
  mailbox: string;
  state: RunnerState;
  connected: boolean;
  uidValidity: string | null;
  lastUid: number | null;
  lastPollAt: number | null;
  lastImapResponseAt: number | null;
  lastError: string | null;
  /** When the next login is due after a failure (ms since the epoch), null while connected. */
  retryAt: number | null;
  paused: string | null;
  reconnects: number;
}

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

export type ImapBreaker = Breaker<[() => Promise<ImapFlow>], ImapFlow>;

/** One breaker per account around logins: while the server keeps failing, runners wait it out. */
export function createImapBreaker(ctx: AccountContext): ImapBreaker {
  return createBreaker('imap', (connect: () => Promise<ImapFlow>) => connect(), { metrics: ctx.metrics, logger: ctx.logger, account: ctx.keys.account },
    { isNeutral: (err) => REFUSALS.has(errorKind(err)), resetTimeoutMs: 30_000 });
}

/** The server answered, and said no for a reason of its own: the runner waits as the kind asks, the breaker stays out of it. */
const REFUSALS: ReadonlySet<ErrorKind> = new Set(['imap-auth', 'imap-throttled', 'imap-over-quota']);

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

export function createMailboxRunner(ctx: AccountContext, mailbox: string, options: RunnerOptions = {}): MailboxRunner {
  const log = ctx.logger.child({ mailbox });
  const labels = { account: ctx.keys.account, mailbox };
  const token = options.fencingToken ?? '';
  const stopper = new AbortController();
  const streak = new FailureStreak(ctx.settings);
  const status: MailboxStatus = {
    mailbox, state: 'starting', connected: false, uidValidity: null, lastUid: null, lastPollAt: null,
    lastImapResponseAt: null, lastError: null, retryAt: null, paused: null, reconnects: 0,
  };
  let loop: Promise<void> | undefined;
  let client: ImapFlow | undefined;
  let loggingIn: ImapFlow | undefined;
  let lastLoggedError = '';
  ctx.metrics.imapConnected.set(labels, 0);
  ctx.metrics.imapReconnects.inc(labels, 0);
  ctx.metrics.uidValidityChanges.inc(labels, 0);
  const refused = (kind: ErrorKind | undefined) => {
    for (const k of ['imap-throttled', 'imap-over-quota'] as const) ctx.metrics.imapRefused.set({ ...labels, kind: k.slice('imap-'.length) }, k === kind ? 1 : 0);
  };
  refused(undefined);

  const publish = () => {
    if (ctx.readOnly) return;
    const record = { ...status, updatedAt: Date.now() };
    ctx.redis.hset(ctx.keys.mailboxStatus, mailbox, JSON.stringify(record)).catch(() => undefined);
  };
  const setState = (state: RunnerState) => {
    if (status.state === state) return;
    status.state = state;
    publish();
  };
  const responded = () => {
    status.lastImapResponseAt = Date.now();
    ctx.metrics.lastImapResponse.set(labels, status.lastImapResponseAt / 1000);
  };

  const connect = async (): Promise<ImapFlow> => {
    const attempt = () => connectImap(ctx.account, {
      tokens: ctx.tokens,
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

  async function session(): Promise<void> {
    // A retry keeps the state of the failure (`auth-failed`, `reconnecting`: /status and /ready
    // say why) until a login succeeds; `connecting` is the first attempt only.
    if (!FAILED_STATES.has(status.state)) setState('connecting');
    client = await connect();
    const conn = client;
    status.retryAt = null;
    refused(undefined);
    let newMail: () => void = () => undefined;
    let pendingMail = false;
    conn.on('exists', () => { pendingMail = true; newMail(); });
    const closed = new Promise<void>((resolve) => conn.once('close', () => resolve()));
    status.connected = true;
    ctx.metrics.imapConnected.set(labels, 1);
    responded();

    const opened = await conn.mailboxOpen(mailbox, { readOnly: true });
    const box: OpenedMailbox = { path: mailbox, uidValidity: String(opened.uidValidity), uidNext: opened.uidNext };
    status.uidValidity = box.uidValidity;
    responded();

    const idleMode = useIdle(ctx.settings, conn);
    let via: 'start' | 'idle' | 'recheck' | 'poll' = 'start';
    while (!stopper.signal.aborted && conn.usable) {
      setState('syncing');
      pendingMail = false;
      const from = await settlePosition(ctx, conn, box, token);
      status.lastUid = from;
      const synced = await syncNewMail(ctx, conn, box, from, token, {
        signal: stopper.signal,
        onResponse: responded,
        onBatch: (lastUid) => { status.lastUid = lastUid; streak.reset(); },
        onPause: (reason) => { status.paused = reason; setState(reason ? 'paused' : 'syncing'); },
      });
      if (via === 'start') log.info({ lastUid: synced.lastUid, appended: synced.appended, waitingBy: idleMode ? 'idle' : 'poll' }, 'mailbox in sync: waiting for new mail');
      else if (synced.fetched > 0) log.info({ via, fetched: synced.fetched, appended: synced.appended, lastUid: synced.lastUid }, 'new mail');
      status.lastPollAt = Date.now();
      ctx.metrics.lastPoll.set(labels, status.lastPollAt / 1000);
      if (!ctx.readOnly) await ctx.redis.hset(ctx.keys.mailbox(mailbox), 'lastPollAt', status.lastPollAt);
      status.lastError = null;
      lastLoggedError = '';
      streak.reset();
      setState(idleMode ? 'idle' : 'polling');
      publish();
      if (stopper.signal.aborted) break;
      if (pendingMail) { via = idleMode ? 'idle' : 'poll'; continue; }
      const wake = new Promise<void>((resolve) => { newMail = resolve; });
      const reason = await waitForNewMail(conn, mailbox, ctx.settings, { newMail: wake, closed, stop: stopper.signal });
      responded();
      if (reason === 'closed') throw new DependencyError('imap-connection', 'IMAP connection closed by the server');
      via = !idleMode ? 'poll' : reason === 'new-mail' ? 'idle' : 'recheck';
    }
    // Ending without a stop means the connection went away: back off like any other failure.
    if (!stopper.signal.aborted) throw new DependencyError('imap-connection', 'IMAP connection closed by the server');
  }

  /** Records a failed session and returns how long to wait before the next login. */
  function failed(err: unknown): number {
    const kind = sessionFailureKind(err);
    // imapflow's refusals say "Command failed": the server's own answer is what helps.
    const message = typeof (err as { responseStatus?: unknown }).responseStatus === 'string' ? `IMAP server answered ${serverAnswer(err)}` : (err as Error).message;
    const wait = streak.next(kind);
    status.lastError = message;
    status.connected = false;
    status.retryAt = Date.now() + wait;
    ctx.metrics.imapConnected.set(labels, 0);
    const label = failureLabel(err, kind);
    ctx.metrics.imapErrors.inc({ ...labels, kind: label });
    refused(kind);
    setState(STATE_OF[kind] ?? 'reconnecting');
    const detail = { err, kind: label, attempt: streak.attempts, waitMs: wait, retryAt: new Date(status.retryAt).toISOString(), ...(kind === 'imap-throttled' ? { openConnections: openConnections(ctx.account) } : {}) };
    // One clear line per distinct problem; repeats while it lasts are debug noise.
    if (message !== lastLoggedError) {
      lastLoggedError = message;
      if (kind === 'imap-auth') log.error(detail, 'authentication failed: retrying with backoff');
      else if (kind === 'imap-throttled') log.warn(detail, 'IMAP server throttles this account: waiting longer before the next login');
      else if (kind === 'imap-over-quota') log.warn(detail, 'IMAP quota used up (bandwidth or download limit): waiting before the next login');
      else log.warn(detail, 'mailbox connection failed: reconnecting with backoff');
    } else {
      log.debug({ kind: label, attempt: streak.attempts, waitMs: wait }, 'still failing');
    }
    return wait;
  }

  async function run(): Promise<void> {
    while (!stopper.signal.aborted) {
      let wait = 0;
      let failure: unknown;
      try {
        await session();
      } catch (err) {
        failure = err;
        if (err instanceof LeaseLostError) {
          log.warn('lease lost: another producer owns this mailbox now; stopping it here');
          setState('lease-lost');
          stopper.abort();
          options.onLeaseLost?.(mailbox);
        } else if (!stopper.signal.aborted) {
          wait = failed(err);
        }
      } finally {
        const done = client;
        client = undefined;
        status.connected = false;
        ctx.metrics.imapConnected.set(labels, 0);
        // LOGOUT only on a healthy connection; a failed one may never answer it.
        if (done && failure === undefined) await done.logout().catch(() => done.close());
        else done?.close();
      }
      if (stopper.signal.aborted) break;
      status.reconnects += 1;
      ctx.metrics.imapReconnects.inc(labels);
      await sleep(wait, stopper.signal);
    }
    if (status.state !== 'lease-lost') setState('stopped');
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
    status: () => ({ ...status }),
    notReadyReason(now = Date.now()) {
      if (status.state === 'stopped' || status.state === 'lease-lost') return undefined;
      if (status.state === 'auth-failed') return `imap ${mailbox}: authentication failed: ${status.lastError}`;
      const next = status.retryAt ? `; next login at ${new Date(status.retryAt).toISOString()}` : '';
      if (status.state === 'throttled') return `imap ${mailbox}: throttled by the server: ${status.lastError}${next}`;
      if (status.state === 'over-quota') return `imap ${mailbox}: over quota (bandwidth or download limit): ${status.lastError}${next}`;
      if (options.imapBreaker?.opened) return `imap ${mailbox}: circuit breaker open`;
      if (!status.connected) return `imap ${mailbox}: not logged in${status.lastError ? ` (${status.lastError})` : ''}`;
      const silentFor = now - (status.lastImapResponseAt ?? now);
      const bound = 2 * ctx.settings.pollIntervalMs + 60_000;
      if (silentFor > bound && status.state !== 'paused') return `imap ${mailbox}: no answer from the server for ${Math.round(silentFor / 1000)} s`;
      return undefined;
    },
  };
}
