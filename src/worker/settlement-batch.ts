// What one delivered batch decided, as data: which entries to acknowledge with a dedupe marker,
// which only to acknowledge (duplicates), which to schedule for a retry and which to dead-letter.
// Built by a pure function from the sink's outcomes and the failure records, so the retry policy
// is tested without Redis; recorded by one settleBatch script call (stream-ops.ts).
import { TransientDeliveryError, PermanentDeliveryError } from '../core/errors.ts';
import type { StreamEntry } from './entries.ts';
import { decideAfterFailure, type DeadLetterReason, type FailureDecision, type FailureRecord, type RetrySettings } from './retry-policy.ts';
import type { Outcome } from './sinks/types.ts';

export interface RetryEntry { id: string; record: FailureRecord; dueAt: number }
export interface DeadLetterEntry { id: string; reason: DeadLetterReason; record: FailureRecord; fields: string[] }

export interface Settlement {
  delivered: StreamEntry[];
  /** Ids of entries whose key was delivered before: acknowledged without a call to the sink. */
  duplicates: string[];
  retries: RetryEntry[];
  deadLetters: DeadLetterEntry[];
  /** Some entries may have failure records, retry times or hand-out counts to clear. */
  mayHaveRetryState: boolean;
}

export function emptySettlement(mayHaveRetryState: boolean): Settlement {
  return { delivered: [], duplicates: [], retries: [], deadLetters: [], mayHaveRetryState };
}

export function settlementSize(s: Settlement): number {
  return s.delivered.length + s.duplicates.length + s.retries.length + s.deadLetters.length;
}

/** The dead letter's own fields; the script adds the entry's `key` and `email`. */
export function deadLetterFields(id: string, group: string, reason: DeadLetterReason, record: FailureRecord, now: number): string[] {
  return ['reason', reason, 'error', record.lastError, 'attempts', String(record.attempts),
    'firstFailureAt', new Date(record.firstFailureAt).toISOString(), 'lastFailureAt', new Date(record.lastFailureAt).toISOString(),
    'consumer', record.consumer, 'group', group, 'originalId', id, 'deadLetteredAt', new Date(now).toISOString()];
}

/** The outcome as the error the retry policy reasons about (it honours Retry-After and permanence). */
function outcomeError(outcome: Exclude<Outcome, { status: 'delivered' }>): Error {
  if (outcome.status === 'permanent') return new PermanentDeliveryError(outcome.reason);
  return new TransientDeliveryError(outcome.reason, { kind: outcome.kind, retryAfterMs: outcome.retryAfterMs });
}

export interface OutcomeContext {
  group: string;
  consumer: string;
  settings: RetrySettings;
  /** When the sink answered: a retry is timed from the failure itself. */
  now: number;
  random?: () => number;
}

/** Adds one entry's outcome to the settlement; `previous` is its failure record, if any. */
export function addOutcome(s: Settlement, entry: StreamEntry, outcome: Outcome, previous: FailureRecord | undefined, ctx: OutcomeContext): FailureDecision | undefined {
  if (outcome.status === 'delivered') { s.delivered.push(entry); return undefined; }
  const decision = decideAfterFailure(outcomeError(outcome), previous, { now: ctx.now, consumer: ctx.consumer, settings: ctx.settings, random: ctx.random });
  if (decision.kind === 'retry') s.retries.push({ id: entry.id, record: decision.record, dueAt: decision.dueAt });
  else addDeadLetter(s, entry.id, decision.reason, decision.record, ctx);
  return decision;
}

export function addDeadLetter(s: Settlement, id: string, reason: DeadLetterReason, record: FailureRecord, ctx: { group: string; now: number }): void {
  s.deadLetters.push({ id, reason, record, fields: deadLetterFields(id, ctx.group, reason, record, ctx.now) });
}
