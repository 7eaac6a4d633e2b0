// What a mailbox runner shows the world: its state and counters for /status (also written to
// Redis for `mailstream status`), the per-mailbox metrics, and why it is not ready. The runner's
// loop only reports into this board; every reader (HTTP, heartbeat, CLI) reads from it.
import type { ErrorKind } from '../core/errors.ts';
import type { AccountContext } from './mailbox-context.ts';

export type RunnerState = 'starting' | 'queued' | 'between-turns' | 'connecting' | 'syncing' | 'idle' | 'polling' | 'paused' | 'reconnecting' | 'auth-failed' | 'throttled' | 'over-quota' | 'misconfigured' | 'lease-lost' | 'stopped';

/** States a failed login leaves behind until a login succeeds: /status and /ready keep naming the refusal. */
export const FAILED_STATES: ReadonlySet<RunnerState> = new Set(['reconnecting', 'auth-failed', 'throttled', 'over-quota']);

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
  /** What a login waits for: host-cap (IMAP_MAX_CONNECTIONS_PER_HOST) or connect-rate (IMAP_CONNECT_RATE); null when it waits for nothing. */
  queuedFor: QueuedFor | null;
}

export type QueuedFor = 'host-cap' | 'connect-rate';

/** States between two sessions of a mailbox that is fine: waiting for its connection, or logging in. */
const TAKING_TURNS: ReadonlySet<RunnerState> = new Set(['queued', 'between-turns', 'connecting']);

/** The refusals a mailbox can be waiting out, each its own series of mailstream_imap_refused. */
const REFUSED_KINDS = ['imap-throttled', 'imap-over-quota'] as const;

export class RunnerStatusBoard {
  readonly status: MailboxStatus;
  private readonly ctx: AccountContext;
  private readonly labels: { account: string; mailbox: string };

  constructor(ctx: AccountContext, mailbox: string) {
    this.ctx = ctx;
    this.labels = { account: ctx.keys.account, mailbox };
    this.status = {
      mailbox, state: 'starting', connected: false, uidValidity: null, lastUid: null, lastPollAt: null,
      lastImapResponseAt: null, lastError: null, retryAt: null, paused: null, reconnects: 0, queuedFor: null,
    };
    // Every series exists from the start, at 0, so rates and alerts see it before the first event.
    ctx.metrics.imapConnected.set(this.labels, 0);
    ctx.metrics.imapReconnects.inc(this.labels, 0);
    ctx.metrics.uidValidityChanges.inc(this.labels, 0);
    this.refused(undefined);
  }

  /** Writes the status where `mailstream status` reads it (never in dry-run). */
  publish(): void {
    if (this.ctx.readOnly) return;
    const record = { ...this.status, updatedAt: Date.now() };
    this.ctx.redis.hset(this.ctx.keys.mailboxStatus, this.status.mailbox, JSON.stringify(record)).catch(() => undefined);
  }

  setState(state: RunnerState): void {
    if (this.status.state === state) return;
    this.status.state = state;
    this.publish();
    this.onState?.(state);
  }

  /** Told of every state change (the runner hands its connection over once the mailbox is in sync). */
  onState: ((state: RunnerState) => void) | undefined;

  /**
   * The login waits (for a slot of the host, or the pacer), or waits no more. A failure's state
   * (reconnecting, throttled, ...) stays while it waits: /status and /ready keep saying why.
   */
  queued(reason: QueuedFor | null): void {
    this.status.queuedFor = reason;
    if (reason && !FAILED_STATES.has(this.status.state)) this.setState('queued');
    else if (!reason && this.status.state === 'queued') this.setState('connecting');
  }

  /** The server answered (liveness). */
  responded(): void {
    this.status.lastImapResponseAt = Date.now();
    this.ctx.metrics.lastImapResponse.set(this.labels, this.status.lastImapResponseAt / 1000);
  }

  setConnected(connected: boolean): void {
    this.status.connected = connected;
    this.ctx.metrics.imapConnected.set(this.labels, connected ? 1 : 0);
  }

  /** Which refusal the mailbox waits out now, if any. */
  refused(kind: ErrorKind | undefined): void {
    for (const k of REFUSED_KINDS) this.ctx.metrics.imapRefused.set({ ...this.labels, kind: k.slice('imap-'.length) }, k === kind ? 1 : 0);
  }

  polled(at: number): void {
    this.status.lastPollAt = at;
    this.ctx.metrics.lastPoll.set(this.labels, at / 1000);
  }

  reconnecting(): void {
    this.status.reconnects += 1;
    this.ctx.metrics.imapReconnects.inc(this.labels);
  }

  /** Why this mailbox is not ready, or undefined when it is. */
  notReadyReason(now: number, breakerOpen: boolean): string | undefined {
    const { status } = this;
    const mailbox = status.mailbox;
    if (status.state === 'stopped' || status.state === 'lease-lost') return undefined;
    if (status.state === 'auth-failed') return `imap ${mailbox}: authentication failed: ${status.lastError}`;
    if (status.state === 'misconfigured') return `imap ${mailbox}: not read: ${status.lastError}`;
    const next = status.retryAt ? `; next login at ${new Date(status.retryAt).toISOString()}` : '';
    if (status.state === 'throttled') return `imap ${mailbox}: throttled by the server: ${status.lastError}${next}`;
    if (status.state === 'over-quota') return `imap ${mailbox}: over quota (bandwidth or download limit): ${status.lastError}${next}`;
    if (breakerOpen) return `imap ${mailbox}: circuit breaker open`;
    if (!status.connected && TAKING_TURNS.has(status.state)) {
      // Taking turns is how a capped host is read: ready while each turn comes round in time.
      const since = now - (status.lastPollAt ?? -Infinity);
      if (since <= 2 * this.ctx.settings.pollIntervalMs + 60_000) return undefined;
      const why = status.queuedFor === 'connect-rate' ? 'IMAP_CONNECT_RATE' : 'IMAP_MAX_CONNECTIONS_PER_HOST';
      if (status.state !== 'connecting') return `imap ${mailbox}: waiting for a connection (${why})${status.lastPollAt ? `; last looked at ${new Date(status.lastPollAt).toISOString()}` : ''}`;
    }
    if (!status.connected) return `imap ${mailbox}: not logged in${status.lastError ? ` (${status.lastError})` : ''}`;
    const silentFor = now - (status.lastImapResponseAt ?? now);
    const bound = 2 * this.ctx.settings.pollIntervalMs + 60_000;
    if (silentFor > bound && status.state !== 'paused') return `imap ${mailbox}: no answer from the server for ${Math.round(silentFor / 1000)} s`;
    return undefined;
  }
}
