// What the producer assembles per account: its context (IMAP settings, tokens, appender, gate,
// breakers) and a factory of its mailbox runners. The role itself, which runs exactly the runners
// whose leases this producer holds, is in leased-producer.ts.
import { breakerStateName, createBreaker, type Breaker } from '../core/breaker.ts';
import { LeaseLostError, StaleUidValidityError } from '../core/errors.ts';
import { accountKeys } from '../core/keys.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import type { RedisClient } from '../core/redis.ts';
import type { Config } from '../config/load.ts';
import { createAccessTokenSource } from './access-token.ts';
import { TRACK_NOTHING } from './change-events.ts';
import type { AccountSettings } from './account.ts';
import type { BlobHealth } from './blob-health.ts';
import type { ConnectLimits } from './connect-limits.ts';
import type { RedisMemoryWatch } from './redis-memory.ts';
import { createFaultInjector } from './fault-injection.ts';
import type { AccountContext } from './mailbox-context.ts';
import { createImapBreaker, createMailboxRunner, type MailboxRunner, type RunnerOptions } from './mailbox-runner.ts';
import type { ParsePool } from './parse-pool.ts';
import { createStreamAppender, type Appender, type AppendResult, type BatchAppend } from './stream-append.ts';
import { createStreamGate } from './stream-gate.ts';

const APPEND_TIMEOUT_MS = 15_000;

export function syncSettings(config: Readonly<Config>): AccountContext['settings'] {
  const { imap, producer } = config;
  return {
    idle: imap.idle,
    pollIntervalMs: imap.pollIntervalMs,
    idleRestartMs: imap.idleRestartMs,
    noopIntervalMs: imap.noopIntervalMs,
    fetchBatchSize: imap.fetchBatchSize,
    startFrom: producer.startFrom,
    uidValidityResync: producer.uidValidityResync,
    uidValidityMarginMs: producer.uidValidityMarginMs,
    reconnectBaseMs: producer.reconnectBaseMs,
    reconnectMaxMs: producer.reconnectMaxMs,
    throttledWaitMs: producer.throttledWaitMs,
    throttledMaxWaitMs: producer.throttledMaxWaitMs,
    overQuotaWaitMs: producer.overQuotaWaitMs,
    fetchFilter: producer.fetchFilter,
    changes: producer.trackChanges,
  };
}

/** Appends time out and trip a breaker while Redis is away; a late append is harmless (idempotent). */
function appendBreaker(inner: Appender, deps: { metrics: Metrics; logger: Logger; account: string }): Breaker<[BatchAppend], AppendResult> {
  return createBreaker('redis', (batch: BatchAppend) => inner.append(batch), deps,
    { timeoutMs: APPEND_TIMEOUT_MS, isNeutral: (err) => err instanceof LeaseLostError || err instanceof StaleUidValidityError });
}

export function createAccountContext(deps: {
  config: Readonly<Config>; account: AccountSettings; redis: RedisClient; logger: Logger; metrics: Metrics; pool: ParsePool;
  appender?: Appender; readOnly?: boolean;
  /** Shared by every account of the process: one store, one Redis. */
  blobs?: BlobHealth; memory?: RedisMemoryWatch;
}): AccountContext {
  const { config, account, redis, metrics } = deps;
  const keys = accountKeys(config.prefix, account.account);
  const logger = deps.logger.child({ account: account.account });
  const readOnly = deps.readOnly ?? false;
  const breaker = deps.appender ? undefined : appendBreaker(createStreamAppender(redis, keys, { retentionMs: config.producer.ingestedRetentionMs }), { metrics, logger, account: account.account });
  return {
    account, keys, redis, logger, metrics, pool: deps.pool,
    appender: deps.appender ?? { append: (batch) => breaker!.fire(batch) },
    appendBreaker: breaker,
    tokens: account.auth.kind === 'password' ? undefined : createAccessTokenSource(account.auth, account.user, { logger, metrics }),
    gate: readOnly ? undefined : createStreamGate({ redis, keys, metrics, logger, maxLen: config.producer.streamMaxLen, maxLag: config.producer.maxConsumerLag, blobs: deps.blobs, memory: deps.memory }),
    fault: createFaultInjector(config.producer.faultInjection),
    blobs: deps.blobs,
    settings: readOnly ? { ...syncSettings(config), changes: TRACK_NOTHING } : syncSettings(config),
    readOnly,
  };
}

/** Runners of one account; the scale-out coordinator may start and stop them one by one. */
export interface AccountRunners {
  context: AccountContext;
  runner(mailbox: string, options?: Omit<RunnerOptions, 'imapBreaker' | 'limits'>): MailboxRunner;
  /** State of the account's breakers, for the heartbeat and `mailstream status`. */
  breakers(): Record<string, 'open' | 'half-open' | 'closed'>;
}

/** `limits`: the process's login pacer and per-host cap, shared by every account. */
export function accountRunners(context: AccountContext, limits?: ConnectLimits): AccountRunners {
  const imapBreaker = createImapBreaker(context);
  return {
    context,
    runner: (mailbox, options = {}) => createMailboxRunner(context, mailbox, { ...options, imapBreaker, limits }),
    breakers: () => ({ imap: breakerStateName(imapBreaker), ...(context.appendBreaker ? { redis: breakerStateName(context.appendBreaker) } : {}) }),
  };
}
