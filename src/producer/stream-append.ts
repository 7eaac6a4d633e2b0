// The producer's writes to Redis, each one Lua script (src/core/scripts): appending a batch while
// advancing the mailbox state, appending what changed in a mailbox while moving its change
// cursor, and moving the sync position. Result codes become typed errors here.
import type { Result } from 'ioredis';
import type { ChangeEvent } from '../core/entry.ts';
import { LeaseLostError, StaleUidValidityError } from '../core/errors.ts';
import type { AccountKeys } from '../core/keys.ts';
import type { RedisClient } from '../core/redis.ts';
import { announceEntries } from '../core/signals.ts';
import { movedEvent, normalFlags, normalLabels, uidRecord, type SeenMessage } from './change-events.ts';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    appendBatch(stream: string, state: string, ingested: string, lease: string, uids: string, ...args: Array<string | number>): Result<[number, number, number, number], Context>;
    appendChanges(stream: string, state: string, ingested: string, lease: string, uids: string, ...args: Array<string | number>): Result<[number, number, number], Context>;
    rebaseMailbox(state: string, lease: string, uids: string, token: string, expected: string, uidValidity: string, lastUid: number, resetSince: string, filterUntil: string): Result<number, Context>;
    trimStream(stream: string, maxLen: number, maxRemoved: number): Result<[number, number], Context>;
  }
}

/** Codes the producer's scripts return. */
export const SCRIPT_CODE = { ok: 0, stale: 1, leaseLost: 2, cursorMoved: 3 } as const;

export interface PreparedEntry {
  uid: number;
  key: string;
  /** The EmailEntry, serialised once (by the parser). */
  email: string;
  internalDateMs: number;
  parseError: boolean;
  /** The message's flags and Gmail labels when fetched (what change tracking starts from). */
  flags: string[];
  labels?: string[];
}

export interface BatchAppend {
  mailbox: string;
  uidValidity: string;
  /** Highest UID the batch covers (also when some UIDs vanished between listing and fetching). */
  lastUid: number;
  entries: PreparedEntry[];
  /** Lease value of the runner (scale-out); '' in single-producer mode. */
  fencingToken: string;
  /** With TRACK_CHANGES: record each UID; absent, nothing is recorded. */
  tracking?: {
    /** A key already ingested at a UID new to this mailbox becomes a message.moved (not with Gmail, where a message is in many mailboxes at once). */
    announceMoves: boolean;
    /** HIGHESTMODSEQ when the mailbox was opened (CONDSTORE), where the change cursor starts if it has not. */
    modseqFloor: string | null;
  };
}

export interface AppendResult {
  appended: number;
  skipped: number;
  /** Keys already ingested, announced at their new UID (message.moved), with TRACK_CHANGES=deletes. */
  moved?: number;
}

export interface Appender {
  append(batch: BatchAppend): Promise<AppendResult>;
}

/** What change tracking records of an appended entry; and its message.moved, should its key be known. */
function trackingArgs(keys: AccountKeys, batch: BatchAppend, entry: PreparedEntry, observedAt: string): [string, string, string] {
  const seen: SeenMessage = { key: entry.key, flags: normalFlags(entry.flags), labels: normalLabels(entry.labels) };
  if (!batch.tracking?.announceMoves) return [uidRecord(seen), '', ''];
  const moved = movedEvent({ account: keys.account, mailbox: batch.mailbox, uidValidity: batch.uidValidity, uid: entry.uid }, seen, observedAt);
  return [uidRecord(seen), moved.key, JSON.stringify(moved)];
}

function checkCode(code: number, mailbox: string): void {
  if (code === SCRIPT_CODE.stale) throw new StaleUidValidityError(mailbox);
  if (code === SCRIPT_CODE.leaseLost) throw new LeaseLostError(mailbox);
}

export function createStreamAppender(redis: RedisClient, keys: AccountKeys, options: { retentionMs: number }): Appender {
  return {
    async append(batch) {
      const now = Date.now();
      const observedAt = new Date(now).toISOString();
      const tracking = batch.tracking ? (batch.tracking.announceMoves ? 'moves' : 'track') : '';
      const args: Array<string | number> = [
        batch.uidValidity, batch.fencingToken, batch.lastUid,
        batch.entries.reduce((max, e) => Math.max(max, e.internalDateMs), 0),
        now, now - options.retentionMs, tracking, batch.tracking?.modseqFloor ?? '', batch.entries.length,
      ];
      for (const entry of batch.entries) {
        args.push(entry.key, entry.email, entry.uid, ...(batch.tracking ? trackingArgs(keys, batch, entry, observedAt) : ['', '', '']));
      }
      const [code, appended, skipped, moved] = await redis.appendBatch(keys.stream, keys.mailbox(batch.mailbox), keys.ingested, keys.lease(batch.mailbox), keys.uids(batch.mailbox), ...args);
      checkCode(code, batch.mailbox);
      // Not awaited: the batch is in; the signal only wakes the workers sooner.
      if (appended + moved > 0) void announceEntries(redis, keys);
      return moved ? { appended, skipped, moved } : { appended, skipped };
    },
  };
}

/** One UID's change: its new record (null: the UID is gone) and the event to append, if any. */
export interface UidChange {
  uid: number;
  record: string | null;
  event?: ChangeEvent;
}

export interface ChangeBatch {
  mailbox: string;
  uidValidity: string;
  fencingToken: string;
  /** The change cursor the changes were read from, and where it moves with them. */
  cursor: { field: 'highestModseq' | 'scanSeq'; expected: string | null; next: string };
  changes: UidChange[];
}

/** `applied` false: the cursor is not where the changes were read from (this batch went in already); nothing was written. */
export interface ChangeResult { applied: boolean; appended: number; skipped: number }

export async function appendChanges(redis: RedisClient, keys: AccountKeys, batch: ChangeBatch): Promise<ChangeResult> {
  const args: Array<string | number> = [
    batch.uidValidity, batch.fencingToken, batch.cursor.field, batch.cursor.expected ?? '', batch.cursor.next, Date.now(), batch.changes.length,
  ];
  for (const change of batch.changes) {
    const event = change.event;
    args.push(change.uid, change.record ?? '', event?.key ?? '', event?.type ?? '', event ? JSON.stringify(event) : '');
  }
  const [code, appended, skipped] = await redis.appendChanges(keys.stream, keys.mailbox(batch.mailbox), keys.ingested, keys.lease(batch.mailbox), keys.uids(batch.mailbox), ...args);
  checkCode(code, batch.mailbox);
  if (appended > 0) void announceEntries(redis, keys);
  return { applied: code === SCRIPT_CODE.ok, appended, skipped };
}

export async function rebaseMailbox(redis: RedisClient, keys: AccountKeys, mailbox: string, move: {
  fencingToken: string; expectedUidValidity: string | null; uidValidity: string; lastUid: number; resetSince?: string;
  /** FETCH_FILTER is set: UIDs up to this one are listed through it (a backfill). */
  filterUntil?: number;
}): Promise<void> {
  const code = await redis.rebaseMailbox(keys.mailbox(mailbox), keys.lease(mailbox), keys.uids(mailbox), move.fencingToken,
    move.expectedUidValidity ?? '', move.uidValidity, move.lastUid, move.resetSince ?? '', move.filterUntil === undefined ? '' : String(move.filterUntil));
  checkCode(code, mailbox);
}
