// The worker role: one scheduler of account turns (turns.ts) for every account stream, woken by
// one blocking read of the shared signal stream and a periodic sweep, all sharing one sink, its
// circuit breaker and the settler that records outcomes. Two Redis connections whatever the number
// of accounts: the daemon's command connection (every account's reads and scripts, auto-pipelined)
// and the signal read. runDaemon (src/core/daemon.ts) supplies metrics, HTTP, heartbeat and the
// shutdown sequence; this module assembles the parts and says how to stop them.
import { breakerStateName, createBreaker } from '../core/breaker.ts';
import { sleep } from '../core/backoff.ts';
import type { DaemonContext, RoleParts } from '../core/daemon.ts';
import { isPermanent } from '../core/errors.ts';
import { accountKeys, globalKeys } from '../core/keys.ts';
import { closeRedis, createRedis } from '../core/redis.ts';
import type { StreamStats } from '../core/stream-stats.ts';
import { AccountTurn } from './account-turn.ts';
import { breakerAction, Deliverer, HOLD_WHILE_CLOSED, type SinkBreaker } from './deliver.ts';
import { startKeepAlive } from './keep-alive.ts';
import { DEAD_LETTER_REASONS } from './retry-policy.ts';
import { Settler } from './settler.ts';
import { listenForSignals } from './signal-listener.ts';
import type { Sink } from './sinks/types.ts';
import { startStreamGauges } from './stream-gauges.ts';
import { StreamOps } from './stream-ops.ts';
import { TurnScheduler } from './turns.ts';

const SINK_CHECK_TIMEOUT_MS = 1_500;

export interface WorkerOptions {
  /** Made (and checked) before the daemon opens anything: see createSink. */
  sink: Sink;
  /** The accounts whose streams it reads; default the accounts file's, or the one IMAP_USER names. */
  accounts?: readonly string[];
}

export async function startWorker(ctx: DaemonContext, options: WorkerOptions): Promise<RoleParts> {
  const { config, logger, metrics, redis } = ctx;
  const w = config.worker;
  const { sink } = options;
  const accounts = options.accounts ?? config.accounts.map((a) => a.id);
  // The breaker tries a sink that went down again after twice the first retry delay (1 s to 30 s).
  const resetTimeoutMs = Math.min(30_000, Math.max(1_000, 2 * w.retryBaseMs));
  // One call is one batch; a call fails when most of its emails found the sink down (those wait,
  // uncharged). Ten calls in the window before it judges, so a few retries of failing emails in a
  // batch of their own do not read as an outage. Shared by every account: it is one sink.
  const breaker: SinkBreaker = createBreaker('sink', breakerAction(sink),
    { metrics, logger, account: '*' }, { isNeutral: isPermanent, resetTimeoutMs, volumeThreshold: 10, openAfterFailuresInARow: HOLD_WHILE_CLOSED });
  const breakerPollMs = Math.min(250, resetTimeoutMs);

  for (const reason of DEAD_LETTER_REASONS) metrics.emailsDeadLettered.inc({ reason }, 0);
  sink.useMetrics?.(metrics);
  metrics.emailsDelivered.inc({ sink: sink.kind }, 0);
  metrics.emailsRetried.inc({ sink: sink.kind }, 0);
  metrics.settleBlocked.set(0);
  metrics.unsettledOutcomes.set(0);
  const stopping = new AbortController();
  const giveUp = new AbortController();
  const settler = new Settler({ metrics, logger });
  // Set once the scheduler exists; the deliverer is made first because every turn needs it.
  let scheduler: TurnScheduler | undefined;
  const deliverer = new Deliverer({
    sink, breaker, settler, metrics, logger, group: w.group, consumer: w.consumerName, stopping: stopping.signal, giveUp: giveUp.signal, breakerPollMs,
    maxUnfinished: w.maxUnfinishedDeliveries,
    retry: { maxAttempts: w.maxAttempts, backoff: { baseMs: w.retryBaseMs, maxMs: w.retryMaxMs, jitter: 0.25 }, maxRetryAfterMs: Math.max(w.retryMaxMs, 3_600_000) },
    onRetryScheduled: (account, dueAt) => scheduler?.retryAt(account, dueAt),
  });

  const streams = accounts.map((account) => new StreamOps({ redis, keys: accountKeys(config.prefix, account), group: w.group, consumer: w.consumerName, dedupeTtlSeconds: w.dedupeTtlSeconds }));
  // A live worker looks at every account at least every WORKER_SWEEP_MS (and reads signalled ones
  // sooner), so a consumer idle for many of those, holding nothing, is gone.
  const deadConsumerIdleMs = Math.max(w.claimIdleMs, 10 * w.readBlockMs, 3 * w.sweepMs);
  const turns = new Map(streams.map((ops) => [ops.account, new AccountTurn({
    ops, redis, deliverer, breaker, metrics, logger, stopping: stopping.signal,
    settings: { group: w.group, consumer: w.consumerName, readBatchSize: w.readBatchSize, claimIdleMs: w.claimIdleMs, deadConsumerIdleMs },
    onRetryDue: (account, dueAt) => scheduler?.retryAt(account, dueAt),
  })]));
  scheduler = new TurnScheduler({
    turns, breaker, settler, lanes: w.concurrency, sweepMs: w.sweepMs, claimIntervalMs: w.claimIntervalMs, breakerPollMs, logger, stopping: stopping.signal,
  });
  const signals = createRedis({ url: config.redis.url, clusterNodes: config.redis.clusterNodes, name: 'mailstream:worker:signals', logger, purpose: 'blocking' });
  const keepAlive = startKeepAlive({ streams, inHand: deliverer.inHand, intervalMs: Math.max(50, Math.floor(w.claimIdleMs / 3)), logger });
  const gauges = startStreamGauges({ redis, streams, group: w.group, metrics, logger });
  const loops = [
    scheduler.run(),
    listenForSignals({ blocking: signals, key: globalKeys(config.prefix).signals, blockMs: w.readBlockMs, onSignal: (account) => scheduler?.signal(account), onListening: () => scheduler?.startUp(), logger, stopping: stopping.signal }),
  ];
  logger.info({ consumer: w.consumerName, group: w.group, sink: sink.kind, accounts: accounts.length <= 20 ? accounts : accounts.length }, 'worker consuming');
  let lastStats: StreamStats[] = [];

  return {
    async ready() {
      const reasons: string[] = [];
      if (settler.blockedReason) reasons.push(settler.blockedReason);
      if (breaker.opened) reasons.push(`sink (${sink.kind}): circuit breaker open`);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`sink (${sink.kind}) does not answer`)), SINK_CHECK_TIMEOUT_MS); });
      try {
        await Promise.race([sink.check(), timeout]);
      } catch (err) {
        reasons.push(`sink (${sink.kind}): ${(err as Error).message}`);
      } finally {
        clearTimeout(timer);
      }
      return { ready: reasons.length === 0, reasons };
    },
    async status() {
      lastStats = await gauges.refreshAll();
      return {
        consumer: w.consumerName, group: w.group, sink: sink.kind, breaker: breakerStateName(breaker),
        inFlight: deliverer.inFlight, unsettled: settler.unsettled, settle: settler.blockedReason ?? 'ok', maxAttempts: w.maxAttempts, streams: lastStats,
      };
    },
    heartbeat: () => ({ consumer: w.consumerName, group: w.group, sink: sink.kind, breaker: breakerStateName(breaker), inFlight: deliverer.inFlight, unsettled: settler.unsettled }),
    async stop() {
      stopping.abort();
      gauges.stop();
      // A blocked signal read would hold the stop for up to READ_BLOCK_MS: cut it.
      signals.disconnect();
      const finished = Promise.allSettled(loops);
      // The timer is cancelled once the loops finish: a pending 30 s timer would hold a process
      // that is meant to exit (a start-up that failed after the worker began).
      const started = Date.now();
      const timeUp = new AbortController();
      const inTime = await Promise.race([finished.then(() => true), sleep(config.shutdownTimeoutMs, timeUp.signal).then(() => false)]);
      timeUp.abort();
      if (!inTime) {
        logger.warn({ timeoutMs: config.shutdownTimeoutMs, inFlight: deliverer.inFlight }, 'deliveries still under way at the shutdown timeout: leaving them pending for another worker');
        giveUp.abort();
        await Promise.race([finished, sleep(1_000)]);
      }
      // What the sink answered is recorded before the process goes, for as long as the shutdown
      // timeout allows (Redis may be refusing writes right now): an outcome left unrecorded means
      // the email is sent again, with the same key, by another worker.
      const left = await settler.drain(Math.max(0, config.shutdownTimeoutMs - (Date.now() - started)));
      if (left > 0) logger.warn({ unsettled: left }, 'outcomes not recorded by the shutdown timeout: those entries stay pending and are delivered again, with the same key');
      keepAlive.stop();
      breaker.shutdown();
      await Promise.all([closeRedis(signals, 200), sink.close().catch((err: unknown) => logger.warn({ err }, 'sink did not close cleanly'))]);
    },
  };
}
