// How long a mailbox waits before it logs in again, by what went wrong. A plain failure (network,
// a dropped connection) is retried soon with a short exponential backoff; a server that throttles
// us gets a much longer one, or it keeps refusing and may lock the account for longer; a used-up
// quota (Gmail's daily download limit) does not come back for hours, so we wait a long fixed time
// instead of reconnecting in a loop. A dropped connection waits with full jitter (a uniform pick
// between 0 and the backoff): after a server restart every mailbox fails at the same moment, and
// only a wide spread keeps them from coming back as one herd (the login pacer then evens out
// what is left). Pure functions: time and randomness come in as arguments.
import { backoffDelay } from '../core/backoff.ts';
import type { ErrorKind } from '../core/errors.ts';

export interface WaitPolicy {
  reconnectBaseMs: number;
  reconnectMaxMs: number;
  throttledWaitMs: number;
  throttledMaxWaitMs: number;
  overQuotaWaitMs: number;
}

const JITTER = 0.3;
const FULL_JITTER = 1;

/** Wait before the next login after the `streak`th failure in a row of `kind` (1 = the first). */
export function waitAfterFailure(kind: ErrorKind, streak: number, policy: WaitPolicy, random: () => number = Math.random): number {
  switch (kind) {
    // A UIDVALIDITY change mid-batch is news, not an outage: settle again at once.
    case 'imap-uidvalidity': return 0;
    // Jitter only upwards: an hour means at least an hour; several mailboxes do not all come back at once.
    case 'imap-over-quota': return Math.round(policy.overQuotaWaitMs * (1 + 0.1 * random()));
    case 'imap-throttled': return backoffDelay(streak, { baseMs: policy.throttledWaitMs, maxMs: Math.max(policy.throttledMaxWaitMs, policy.throttledWaitMs), jitter: JITTER }, random);
    default: return backoffDelay(streak, { baseMs: policy.reconnectBaseMs, maxMs: policy.reconnectMaxMs, jitter: FULL_JITTER }, random);
  }
}

/** Failures in a row, counted per kind: a throttling refusal after three network errors is the first of its kind. */
export class FailureStreak {
  private kind: ErrorKind | undefined;
  private count = 0;
  private readonly policy: WaitPolicy;
  private readonly random: () => number;

  constructor(policy: WaitPolicy, random: () => number = Math.random) {
    this.policy = policy;
    this.random = random;
  }

  /** Records a failure and returns the wait before the next try. */
  next(kind: ErrorKind): number {
    this.count = kind === this.kind ? this.count + 1 : 1;
    this.kind = kind;
    return waitAfterFailure(kind, this.count, this.policy, this.random);
  }

  reset(): void {
    this.kind = undefined;
    this.count = 0;
  }

  /** Failures of the current kind in a row. */
  get attempts(): number { return this.count; }
}
