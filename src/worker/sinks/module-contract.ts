// The rules between mailstream and a user's handler module, as pure functions: which exports make
// a usable module, what a thrown error means, and how a `handleBatch` answer becomes outcomes.
// The handler may load its own copy of mailstream's errors, so errors are recognised by their
// `permanent` flag and class name as well as by instanceof.
import { ERROR_KINDS, isPermanent, TransientDeliveryError, type DeliveryRetryKind } from '../../core/errors.ts';
import type { SinkModule } from './module-api.ts';
import type { Outcome } from './types.ts';

/** Reasons end up in failure records and the DLQ: long handler messages are cut. */
export const REASON_MAX_CHARS = 500;

type RetryKind = DeliveryRetryKind;

const NAMES = ['handle', 'handleBatch', 'init', 'close'] as const;

function isRetryKind(value: unknown): value is RetryKind {
  return typeof value === 'string' && (value.startsWith('sink-') || value === 'blob-unavailable') && value in ERROR_KINDS && !ERROR_KINDS[value as RetryKind].permanent;
}

function cut(text: string): string {
  return text.length > REASON_MAX_CHARS ? `${text.slice(0, REASON_MAX_CHARS)}…` : text;
}

function typeName(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value;
}

/**
 * The module's functions, or what is wrong with its exports. A module whose named exports hold
 * none of the four names may export them on its default object instead (`export default { handle }`).
 */
export function moduleFunctions(exported: Record<string, unknown>): { functions: SinkModule } | { problem: string } {
  const fallback = exported.default;
  const source = NAMES.some((name) => name in exported) || typeof fallback !== 'object' || fallback === null
    ? exported
    : fallback as Record<string, unknown>;
  const problems: string[] = [];
  const functions: Record<string, unknown> = {};
  for (const name of NAMES) {
    const value = source[name];
    if (value === undefined) continue;
    // Functions of a default object keep it as `this`.
    if (typeof value === 'function') functions[name] = source === exported ? value : (value as (...args: unknown[]) => unknown).bind(source);
    else problems.push(`\`${name}\` is exported but is ${typeName(value)}, not a function`);
  }
  if (source.handle === undefined && source.handleBatch === undefined) {
    const names = Object.keys(source).filter((k) => k !== 'default');
    problems.unshift(`it exports neither handle(email, ctx) nor handleBatch(emails, ctx) (its exports: ${names.length ? names.join(', ') : 'none'})`);
  }
  return problems.length > 0 ? { problem: problems.join('; ') } : { functions: functions as SinkModule };
}

export function messageOf(err: unknown): string {
  if (err instanceof Error) return cut(err.message || err.name);
  return cut(typeof err === 'string' ? err : `handler threw ${typeName(err)}: ${String(err)}`);
}

/** What a handler's throw means for its email (or, from `handleBatch`, for each email of the batch). */
export function outcomeOfThrow(err: unknown): Outcome {
  // What ctx.blobs.open rejected with, thrown on by the handler: a missing blob never appears,
  // a store that does not answer is waited for.
  const code = (err as { code?: unknown } | null | undefined)?.code;
  if (code === 'ERR_BLOB_NOT_FOUND') return { status: 'permanent', reason: messageOf(err) };
  if (code === 'ERR_BLOB_STORE_UNAVAILABLE') return { status: 'retry', reason: messageOf(err), kind: 'blob-unavailable' };
  if (isPermanent(err)) return { status: 'permanent', reason: messageOf(err) };
  if (err instanceof TransientDeliveryError || (err instanceof Error && err.name === 'TransientDeliveryError')) {
    const { kind, retryAfterMs } = err as { kind?: unknown; retryAfterMs?: unknown };
    const outcome: Outcome = { status: 'retry', reason: messageOf(err), kind: isRetryKind(kind) ? kind : 'sink-failed' };
    if (typeof retryAfterMs === 'number' && Number.isFinite(retryAfterMs) && retryAfterMs >= 0) outcome.retryAfterMs = retryAfterMs;
    return outcome;
  }
  return { status: 'retry', reason: messageOf(err), kind: 'sink-failed' };
}

/** One outcome a handler returned, checked: anything malformed is retried, never dropped. */
function checkedOutcome(value: unknown, index: number): Outcome {
  const given = (typeof value === 'object' && value !== null ? value : {}) as { status?: unknown; reason?: unknown; kind?: unknown; retryAfterMs?: unknown };
  const reason = typeof given.reason === 'string' && given.reason !== '' ? cut(given.reason) : undefined;
  switch (given.status) {
    case 'delivered':
      return { status: 'delivered' };
    case 'permanent':
      return { status: 'permanent', reason: reason ?? 'the handler refused the email' };
    case 'retry': {
      const outcome: Outcome = { status: 'retry', reason: reason ?? 'the handler asked for a retry', kind: isRetryKind(given.kind) ? given.kind : 'sink-failed' };
      const wait = given.retryAfterMs;
      if (typeof wait === 'number' && Number.isFinite(wait) && wait >= 0) outcome.retryAfterMs = wait;
      return outcome;
    }
    default:
      return { status: 'retry', kind: 'sink-failed', reason: `handleBatch gave no valid outcome for email ${index} (expected status 'delivered', 'retry' or 'permanent', got ${typeName(value)}${typeof given.status === 'string' ? ` with status '${cut(given.status)}'` : ''})` };
  }
}

/** `handleBatch`'s answer as exactly `count` outcomes; an answer of the wrong shape retries them all. */
export function outcomesOfBatch(answer: unknown, count: number): Outcome[] {
  if (!Array.isArray(answer) || answer.length !== count) {
    const got = Array.isArray(answer) ? `${answer.length} outcomes` : typeName(answer);
    const outcome: Outcome = { status: 'retry', kind: 'sink-failed', reason: `handleBatch answered ${got} for ${count} emails (expected an array of one outcome per email)` };
    return Array.from({ length: count }, () => outcome);
  }
  return answer.map(checkedOutcome);
}
