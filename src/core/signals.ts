// "Account X has new entries": one small shared stream (keys.ts `signals`) that workers block on,
// so a worker needs one blocking connection whatever the number of account streams. Written after
// the append succeeded, as a command of its own: on Redis Cluster the signal key lives in another
// slot than the account's keys, so no script can write both. A signal that never arrives (Redis
// went away in between, trimmed before a slow worker read it) only delays: workers also sweep
// every account every WORKER_SWEEP_MS.
import type { AccountKeys } from './keys.ts';
import type { RedisClient } from './redis.ts';

/** The one field of a signal entry. */
export const SIGNAL_ACCOUNT_FIELD = 'account';

/**
 * Signals kept (approximately: MAXLEN ~ trims whole macro nodes, cheap). A worker more than this
 * many behind misses some and finds their entries by its sweep.
 */
export const SIGNALS_MAX_LEN = 10_000;

/** Announces new entries in the account's stream; never throws (a lost signal only delays). */
export function announceEntries(redis: RedisClient, keys: AccountKeys): Promise<void> {
  return redis.xadd(keys.signals, 'MAXLEN', '~', SIGNALS_MAX_LEN, '*', SIGNAL_ACCOUNT_FIELD, keys.account)
    .then(() => undefined, () => undefined);
}
