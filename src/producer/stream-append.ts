// The producer's writes to Redis, each one Lua script (src/core/scripts): appending a batch while
// advancing the mailbox state, and moving the sync position. Result codes become typed errors here.
import type { Result } from 'ioredis';
import { LeaseLostError, StaleUidValidityError } from '../core/errors.ts';
import type { AccountKeys } from '../core/keys.ts';
import type { RedisClient } from '../core/redis.ts';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    appendBatch(stream: string, state: string, ingested: string, lease: string, ...args: Array<string | number>): Result<[number, number, number], Context>;
    rebaseMailbox(state: string, lease: string, token: string, expected: string, uidValidity: string, lastUid: number, resetSince: string): Result<number, Context>;
    trimStream(stream: string, maxLen: number, maxRemoved: number): Result<[number, number], Context>;
  }
}

/** Codes the producer's scripts return. */
export const SCRIPT_CODE = { ok: 0, stale: 1, leaseLost: 2 } as const;

export interface PreparedEntry {
  uid: number;
  key: string;
  /** The EmailEntry, serialised once (by the parser). */
  email: string;
  internalDateMs: number;
  parseError: boolean;
}

export interface BatchAppend {
  mailbox: string;
  uidValidity: string;
  /** Highest UID the batch covers (also when some UIDs vanished between listing and fetching). */
  lastUid: number;
  entries: PreparedEntry[];
  /** Lease value of the runner (scale-out); '' in single-producer mode. */
  fencingToken: string;
}

export interface AppendResult { appended: number; skipped: number }

export interface Appender {
  append(batch: BatchAppend): Promise<AppendResult>;
}

export function createStreamAppender(redis: RedisClient, keys: AccountKeys, options: { retentionMs: number }): Appender {
  return {
    async append(batch) {
      const now = Date.now();
      const args: Array<string | number> = [
        batch.uidValidity, batch.fencingToken, batch.lastUid,
        batch.entries.reduce((max, e) => Math.max(max, e.internalDateMs), 0),
        now, now - options.retentionMs, batch.entries.length,
      ];
      for (const entry of batch.entries) args.push(entry.key, entry.email);
      const [code, appended, skipped] = await redis.appendBatch(keys.stream, keys.mailbox(batch.mailbox), keys.ingested, keys.lease(batch.mailbox), ...args);
      if (code === SCRIPT_CODE.stale) throw new StaleUidValidityError(batch.mailbox);
      if (code === SCRIPT_CODE.leaseLost) throw new LeaseLostError(batch.mailbox);
      return { appended, skipped };
    },
  };
}

export async function rebaseMailbox(redis: RedisClient, keys: AccountKeys, mailbox: string, move: {
  fencingToken: string; expectedUidValidity: string | null; uidValidity: string; lastUid: number; resetSince?: string;
}): Promise<void> {
  const code = await redis.rebaseMailbox(keys.mailbox(mailbox), keys.lease(mailbox), move.fencingToken,
    move.expectedUidValidity ?? '', move.uidValidity, move.lastUid, move.resetSince ?? '');
  if (code === SCRIPT_CODE.stale) throw new StaleUidValidityError(mailbox);
  if (code === SCRIPT_CODE.leaseLost) throw new LeaseLostError(mailbox);
}
