// What producer and worker daemons share around their own loop: metrics, the command Redis
// connection, the health/metrics listener, the heartbeat and an orderly stop. A role supplies
// `start`, which returns its readiness checks, its status and how to stop it; this module only
// wires them together, so the daemons' main modules stay thin.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Config } from '../config/load.ts';
import type { Role } from '../config/settings.ts';
import { globalKeys } from './keys.ts';
import { startHeartbeat, type Heartbeat } from './heartbeat.ts';
import { startHttpServer, type HttpServerHandle, type ReadyReport } from './http-server.ts';
import type { Logger } from './logger.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { closeRedis, createRedis, maxmemoryPolicy, type RedisClient } from './redis.ts';
import { Shutdown } from './shutdown.ts';

export interface DaemonContext {
  config: Readonly<Config>;
  logger: Logger;
  metrics: Metrics;
  /** Auto-pipelined command connection; blocking reads must open their own (createRedis). */
  redis: RedisClient;
  shutdown: Shutdown;
  /** Unique id of this process (heartbeat key, default consumer name material). */
  processId: string;
}

export interface RoleParts {
  ready(): Promise<ReadyReport>;
  status(): Promise<Record<string, unknown>>;
  /** Graceful stop of the role's loops; called once, before connections close. */
  stop(): Promise<void>;
  /** Details for the heartbeat record (kept small). */
  heartbeat?: () => Record<string, unknown>;
}

export interface DaemonHandle {
  context: DaemonContext;
  http: HttpServerHandle;
  parts: RoleParts;
  /** Stops everything (same path as SIGTERM, without exiting the process). */
  stop(): Promise<void>;
}

export interface RunDaemonOptions {
  role: Role;
  config: Readonly<Config>;
  logger: Logger;
  start: (context: DaemonContext) => Promise<RoleParts>;
  /** Install SIGTERM/SIGINT handlers that exit the process (the CLI); tests leave it off. */
  handleSignals?: boolean;
}

const REDIS_PING_TIMEOUT_MS = 1_000;

async function pingRedis(redis: RedisClient): Promise<boolean> {
  if (redis.status !== 'ready') return false;
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      redis.ping().then(() => true, () => false),
      new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), REDIS_PING_TIMEOUT_MS); }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export async function runDaemon(options: RunDaemonOptions): Promise<DaemonHandle> {
  const { role, config, logger } = options;
  const processId = `${role}-${hostname()}-${process.pid}-${randomBytes(2).toString('hex')}`;
  const metrics = createMetrics(role);
  const shutdown = new Shutdown(logger, config.shutdownTimeoutMs + 5_000);
  const redis = createRedis({ url: config.redis.url, clusterNodes: config.redis.clusterNodes, name: `mailstream:${role}`, logger });
  shutdown.add('redis', () => closeRedis(redis));

  redis.once('ready', () => {
    void maxmemoryPolicy(redis).then((policy) => {
      if (policy && policy !== 'noeviction') {
        logger.warn({ maxmemoryPolicy: policy }, 'Redis may evict keys (maxmemory-policy is not noeviction): mailbox state and unread mail can be lost; see runbooks/redis-operations.md');
      }
    });
  });

  const context: DaemonContext = { config, logger, metrics, redis, shutdown, processId };
  // A start that fails half-way (a port in use, a role that cannot start) undoes what it began:
  // an open Redis connection would keep the process alive, retrying, instead of exiting.
  const undo = async (err: unknown): Promise<never> => {
    await shutdown.shutdown('start-up failed').catch(() => undefined);
    throw err;
  };
  const parts = await options.start(context).catch(undo);

  const ready = async (): Promise<ReadyReport> => {
    const reasons: string[] = [];
    const redisOk = await pingRedis(redis);
    metrics.redisUp.set(redisOk ? 1 : 0);
    if (!redisOk) reasons.push('redis: not answering');
    const own = await parts.ready().catch((err: unknown) => ({ ready: false, reasons: [`${role}: ${(err as Error).message}`] }));
    reasons.push(...own.reasons);
    return { ready: reasons.length === 0, reasons };
  };

  const http = await startHttpServer({
    host: config.http.host,
    port: config.http.port,
    metrics,
    logger,
    ready,
    status: async () => ({ role, processId, pid: process.pid, uptimeSeconds: Math.round(process.uptime()), ...(await parts.status()) }),
  }).catch(async (err: unknown) => {
    // The role's stop is registered below (so that it runs first on a normal stop): call it here.
    await parts.stop().catch((stopErr: unknown) => logger.warn({ err: stopErr }, `${role} did not stop cleanly`));
    return undo(err);
  });
  shutdown.add('http', () => http.close());

  let heartbeat: Heartbeat | undefined = startHeartbeat({
    redis, key: globalKeys(config.prefix).processes, id: processId, role, logger,
    details: () => ({ httpUrl: http.url, ...parts.heartbeat?.() }),
  });
  shutdown.add('heartbeat', async () => { await heartbeat?.stop(); heartbeat = undefined; });
  shutdown.add(role, () => parts.stop());

  if (options.handleSignals) shutdown.installSignalHandlers();
  logger.info({ processId, http: http.url }, `${role} started`);
  return { context, http, parts, stop: () => shutdown.shutdown('stop requested') };
}
