// The per-account stream gauges (length, DLQ depth, the group's lag and pending count). One series
// per account: with several accounts, a stuck one must not hide behind a sum. Each tick refreshes
// at most a fixed number of accounts, the ones read longest ago, so the Redis work a worker does
// while idle stays the same from 1 to 10,000 accounts; with many accounts a series is that much
// older (ACCOUNTS_PER_TICK accounts every STATS_INTERVAL_MS).
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import type { RedisClient } from '../core/redis.ts';
import { readStreamStats, type StreamStats } from '../core/stream-stats.ts';
import type { StreamOps } from './stream-ops.ts';

const STATS_INTERVAL_MS = 5_000;
const ACCOUNTS_PER_TICK = 100;

export interface StreamGaugesOptions {
  redis: RedisClient;
  streams: readonly StreamOps[];
  group: string;
  metrics: Metrics;
  logger: Logger;
}

export interface StreamGauges {
  /** Reads every account now (for /status) and returns what it found. */
  refreshAll(): Promise<StreamStats[]>;
  stop(): void;
}

export function startStreamGauges(o: StreamGaugesOptions): StreamGauges {
  const { metrics, group } = o;
  for (const ops of o.streams) {
    metrics.groupLag.set({ account: ops.keys.account, group }, 0);
    metrics.groupPending.set({ account: ops.keys.account, group }, 0);
  }
  const last = new Map<string, StreamStats>();
  const refresh = async (ops: StreamOps) => {
    const stats = await readStreamStats(o.redis, ops.keys);
    last.set(ops.account, stats);
    const account = { account: ops.account };
    const mine = stats.groups.find((g) => g.name === group);
    metrics.streamLength.set(account, stats.length);
    metrics.dlqLength.set(account, stats.dlqLength);
    metrics.groupLag.set({ ...account, group }, mine?.lag ?? 0);
    metrics.groupPending.set({ ...account, group }, mine?.pending ?? 0);
  };
  let next = 0;
  let running = false;
  const timer = setInterval(() => {
    if (running || o.streams.length === 0) return;
    running = true;
    const slice: StreamOps[] = [];
    for (let i = 0; i < Math.min(ACCOUNTS_PER_TICK, o.streams.length); i++) {
      slice.push(o.streams[next]!);
      next = (next + 1) % o.streams.length;
    }
    void Promise.all(slice.map(refresh))
      .catch((err: unknown) => o.logger.debug({ err }, 'stream statistics not read'))
      .finally(() => { running = false; });
  }, STATS_INTERVAL_MS);
  timer.unref();
  return {
    async refreshAll() {
      await Promise.all(o.streams.map(refresh)).catch(() => undefined);
      return o.streams.flatMap((ops) => last.get(ops.account) ?? []);
    },
    stop: () => clearInterval(timer),
  };
}
