// What every step of a mailbox runner shares: the account, Redis, the parse threads and the
// producer settings. One per account; each mailbox runner adds its own name and fencing token.
import type { StartFrom } from '../config/load.ts';
import type { SearchKey } from '../config/search-filter.ts';
import type { AccountKeys } from '../core/keys.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import type { RedisClient } from '../core/redis.ts';
import type { AccessTokenSource } from './access-token.ts';
import type { AccountSettings } from './account.ts';
import type { BlobHealth } from './blob-health.ts';
import type { TrackChanges } from './change-events.ts';
import type { FaultInjector } from './fault-injection.ts';
import type { ParsePool } from './parse-pool.ts';
import type { Appender } from './stream-append.ts';
import type { StreamGate } from './stream-gate.ts';

export interface SyncSettings {
  idle: boolean;
  pollIntervalMs: number;
  idleRestartMs: number;
  noopIntervalMs: number;
  fetchBatchSize: number;
  startFrom: StartFrom;
  uidValidityResync: 'since-last' | 'full';
  uidValidityMarginMs: number;
  reconnectBaseMs: number;
  reconnectMaxMs: number;
  throttledWaitMs: number;
  throttledMaxWaitMs: number;
  overQuotaWaitMs: number;
  /** FETCH_FILTER: what a backfill reads. */
  fetchFilter: SearchKey | undefined;
  /** TRACK_CHANGES (never in dry-run). */
  changes: TrackChanges;
}

export interface AccountContext {
  account: AccountSettings;
  keys: AccountKeys;
  redis: RedisClient;
  logger: Logger;
  metrics: Metrics;
  pool: ParsePool;
  appender: Appender;
  /** The breaker around appends (absent when the appender is not Redis, as in dry-run). */
  appendBreaker: { readonly opened: boolean; readonly halfOpen: boolean } | undefined;
  tokens: AccessTokenSource | undefined;
  /** Absent in dry-run: nothing is written, so nothing fills up. */
  gate: StreamGate | undefined;
  fault: FaultInjector;
  /** The blob store's health (absent without a store): batches wait for their blobs through it. */
  blobs: BlobHealth | undefined;
  settings: SyncSettings;
  /** Dry-run: read the mailbox state, never write it. */
  readOnly: boolean;
}
