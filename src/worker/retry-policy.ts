// What happens after a failed delivery, as a pure function of the error, the attempts so far and
// the clock: retry at a given time, or dead-letter with a reason. Attempts live in Redis (the
// failures hash), so the schedule survives restarts and is shared by every worker of the group.
import { backoffDelay, type BackoffPolicy } from '../core/backoff.ts';
import { isPermanent, TransientDeliveryError } from '../core/errors.ts';

export interface FailureRecord {
  attempts: number;
  firstFailureAt: number;
  lastFailureAt: number;
  lastError: string;
  consumer: string;
}

export type DeadLetterReason = 'permanent' | 'max-attempts' | 'max-deliveries';

export const DEAD_LETTER_REASONS: readonly DeadLetterReason[] = ['permanent', 'max-attempts', 'max-deliveries'];

export type FailureDecision =
  | { kind: 'retry'; record: FailureRecord; dueAt: number }
  | { kind: 'dead-letter'; record: FailureRecord; reason: DeadLetterReason };

export interface RetrySettings {
  maxAttempts: number;
  backoff: BackoffPolicy;
  /** A server's Retry-After is honoured up to this long. */
  maxRetryAfterMs: number;
}

/** Keeps error text short in Redis and the DLQ; sinks already cut response bodies. */
export function describeError(err: unknown): string {
  const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return message.length > 1000 ? `${message.slice(0, 1000)}…` : message;
}

export function decideAfterFailure(
  err: unknown,
  previous: FailureRecord | undefined,
  context: { now: number; consumer: string; settings: RetrySettings; random?: () => number },
): FailureDecision {
  const { now, settings } = context;
  const record: FailureRecord = {
    attempts: (previous?.attempts ?? 0) + 1,
    firstFailureAt: previous?.firstFailureAt ?? now,
    lastFailureAt: now,
    lastError: describeError(err),
    consumer: context.consumer,
  };
  if (isPermanent(err)) return { kind: 'dead-letter', record, reason: 'permanent' };
  if (record.attempts >= settings.maxAttempts) return { kind: 'dead-letter', record, reason: 'max-attempts' };
  const retryAfter = err instanceof TransientDeliveryError ? err.retryAfterMs : undefined;
  const delay = retryAfter !== undefined
    ? Math.min(retryAfter, settings.maxRetryAfterMs)
    : backoffDelay(record.attempts, settings.backoff, context.random);
  return { kind: 'retry', record, dueAt: now + delay };
}

/**
 * An entry left behind by a worker that died is tried again alone, and each such try is counted
 * until it has an outcome (delivered, a failure recorded). `handouts` is that count, this try
 * included: past `limit`, the workers keep dying on this email and it goes to the DLQ.
 */
export function decideOnUnfinished(
  handouts: number,
  previous: FailureRecord | undefined,
  context: { now: number; consumer: string; limit: number },
): (FailureDecision & { kind: 'dead-letter' }) | undefined {
  if (handouts <= context.limit) return undefined;
  return {
    kind: 'dead-letter',
    reason: 'max-deliveries',
    record: {
      attempts: previous?.attempts ?? 0,
      firstFailureAt: previous?.firstFailureAt ?? context.now,
      lastFailureAt: context.now,
      lastError: `tried ${handouts - 1} times after a worker died on it, never with an outcome (MAX_UNFINISHED_DELIVERIES=${context.limit}): a worker may be dying on this email`,
      consumer: context.consumer,
    },
  };
}

export function parseFailureRecord(raw: string | null | undefined): FailureRecord | undefined {
  if (!raw) return undefined;
  try {
    const r = JSON.parse(raw) as Partial<FailureRecord>;
    if (typeof r.attempts !== 'number') return undefined;
    return {
      attempts: r.attempts,
      firstFailureAt: Number(r.firstFailureAt ?? 0),
      lastFailureAt: Number(r.lastFailureAt ?? 0),
      lastError: String(r.lastError ?? ''),
      consumer: String(r.consumer ?? ''),
    };
  } catch {
    return undefined;
  }
}
