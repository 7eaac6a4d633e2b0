// The worker role: one read loop per account stream, all sharing one sink, its circuit breaker
// and the settler that records outcomes. runDaemon (src/core/daemon.ts) supplies metrics, HTTP,
// heartbeat and the shutdown sequence; this module assembles the parts and says how to stop them.
import { breakerStateName, createBreaker } from '../core/breaker.ts';
import { sleep } from '../core/backoff.ts';
import type { DaemonContext, RoleParts } from '../core/daemon.ts';
import { isPermanent } from '../core/errors.ts';
import { accountKeys } from '../core/keys.ts';
import { closeRedis, createRedis, type RedisClient } from '../core/redis.ts';
import { readStreamStats, type StreamStats } from '../core/stream-stats.ts';
import { AccountConsumer } from './consumer.ts';
import { breakerAction, Deliverer, type SinkBreaker } from './deliver.ts';
import { startKeepAlive } from './keep-alive.ts';
import { DEAD_LETTER_REASONS } from './retry-policy.ts';
import { Settler } from './settler.ts';
import type { Sink } from './sinks/types.ts';
import { StreamOps } from './stream-ops.ts';

const SINK_CHECK_TIMEOUT_MS = 1_500;
const STATS_INTERVAL_MS = 5_000;

export interface WorkerOptions {
  /** Made (and checked) before the daemon opens anything: see createSink. */
  sink: Sink;
  /** One read loop per account; default the accounts file's, or the one IMAP_USER names. */
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
    { metrics, logger, account: '*' }, { isNeutral: isPermanent, resetTimeoutMs, volumeThreshold: 10 });
  const breakerPollMs = Math.min(250, resetTimeoutMs);

  for (const reason of DEAD_LETTER_REASONS) metrics.emailsDeadLettered.inc({ reason }, 0);
  metrics.emailsDelivered.inc({ sink: sink.kind }, 0);
  metrics.emailsRetried.inc({ sink: sink.kind }, 0);
  metrics.settleBlocked.set(0);
  metrics.unsettledOutcomes.set(0);
  const stopping = new AbortController();
  const giveUp = new AbortController();
  const settler = new Settler({ metrics, logger });
  const deliverer = new Deliverer({
    sink, breaker, settler, metrics, logger, group: w.group, consumer: w.consumerName, stopping: stopping.signal, giveUp: giveUp.signal, breakerPollMs,
    maxUnfinished: w.maxUnfinishedDeliveries,
    retry: { maxAttempts: w.maxAttempts, backoff: { baseMs: w.retryBaseMs, maxMs: w.retryMaxMs, jitter: 0.25 }, maxRetryAfterMs: Math.max(w.retryMaxMs, 3_600_000) },
  });

  const blocking: RedisClient[] = [];
  const streams = accounts.map((account) => new StreamOps({ redis, keys: accountKeys(config.prefix, account), group: w.group, consumer: w.consumerName, dedupeTtlSeconds: w.dedupeTtlSeconds }));
  const consumers = streams.map((ops) => {
    const connection = createRedis({ url: config.redis.url, clusterNodes: config.redis.clusterNodes, name: 'mailstream:worker:read', logger, purpose: 'blocking' });
    blocking.push(connection);
    return new AccountConsumer({
      ops, blocking: connection, deliverer, settler, breaker, metrics, logger, stopping: stopping.signal, breakerPollMs,
      settings: { group: w.group, consumer: w.consumerName, readBatchSize: w.readBatchSize, readBlockMs: w.readBlockMs, claimIdleMs: w.claimIdleMs, claimIntervalMs: w.claimIntervalMs },
    });
  });
  for (const ops of streams) {
    metrics.groupLag.set({ account: ops.keys.account, group: w.group }, 0);
    metrics.groupPending.set({ account: ops.keys.account, group: w.group }, 0);
  }
  const keepAlive = startKeepAlive({ streams, inHand: deliverer.inHand, intervalMs: Math.max(50, Math.floor(w.claimIdleMs / 3)), logger });
  const loops = consumers.map((c) => c.run());
  logger.info({ consumer: w.consumerName, group: w.group, sink: sink.kind, accounts }, 'worker consuming');

  let lastStats: StreamStats[] = [];
  const refreshStats = async () => {
    lastStats = await Promise.all(streams.map((ops) => readStreamStats(redis, ops.keys)));
    // One series per account: with several accounts, a stuck one must not hide behind a sum.
    lastStats.forEach((stats, i) => {
      const account = { account: streams[i]!.keys.account };
      const mine = stats.groups.find((g) => g.name === w.group);
      metrics.streamLength.set(account, stats.length);
      metrics.dlqLength.set(account, stats.dlqLength);
      metrics.groupLag.set({ ...account, group: w.group }, mine?.lag ?? 0);
      metrics.groupPending.set({ ...account, group: w.group }, mine?.pending ?? 0);
    });
  };
  const statsTimer = setInterval(() => void refreshStats().catch((err: unknown) => logger.debug({ err }, 'stream statistics not read')), STATS_INTERVAL_MS);
  statsTimer.unref();

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
      await refreshStats().catch(() => undefined);
      return {
        consumer: w.consumerName, group: w.group, sink: sink.kind, breaker: breakerStateName(breaker),
        inFlight: deliverer.inFlight, unsettled: settler.unsettled, settle: settler.blockedReason ?? 'ok', maxAttempts: w.maxAttempts, streams: lastStats,
      };
    },
    heartbeat: () => ({ consumer: w.consumerName, group: w.group, sink: sink.kind, breaker: breakerStateName(breaker), inFlight: deliverer.inFlight, unsettled: settler.unsettled }),
    async stop() {
      stopping.abort();
      clearInterval(statsTimer);
      // A blocked XREADGROUP would hold the stop for up to READ_BLOCK_MS: cut it. Entries Redis
      // handed over in that read stay pending and are claimed by another worker.
      for (const connection of blocking) connection.disconnect();
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
      await Promise.all([...blocking.map((c) => closeRedis(c, 200)), sink.close().catch((err: unknown) => logger.warn({ err }, 'sink did not close cleanly'))]);
    },
  };
}
