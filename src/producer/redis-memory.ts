// Redis memory as the producer watches it: `used_memory` against `maxmemory` from INFO memory. At
// REDIS_MEMORY_HIGH_WATERMARK of maxmemory the stream gate pauses fetching, long before Redis
// (noeviction) refuses writes; with maxmemory 0 (no limit) it never does. On a cluster the fullest
// master decides, whichever account it holds: a simplification that errs on the side of pausing.
import { Cluster, type Redis } from 'ioredis';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import type { RedisClient } from '../core/redis.ts';

export interface RedisMemoryReading {
  usedBytes: number;
  /** 0: no limit. */
  maxBytes: number;
  /** used / max, null without a limit. */
  ratio: number | null;
  readAt: number;
}

export interface RedisMemoryWatch {
  readonly highWatermark: number;
  /** The reading when memory is at or above the watermark, else null (also when INFO is refused). */
  aboveWatermark(): Promise<RedisMemoryReading | null>;
  last(): RedisMemoryReading | null;
  /** Refreshes the gauges every `intervalMs` until stop(). */
  start(intervalMs?: number): void;
  stop(): void;
}

/** Readings this fresh are reused: every mailbox asks before each batch. */
const MAX_AGE_MS = 1_000;

export function parseMemoryInfo(info: string): { usedBytes: number; maxBytes: number } | null {
  const used = /^used_memory:(\d+)/m.exec(info);
  const max = /^maxmemory:(\d+)/m.exec(info);
  return used && max ? { usedBytes: Number(used[1]), maxBytes: Number(max[1]) } : null;
}

/** The fullest of several servers: the one with the highest share, else (no limits) the largest. */
export function fullest(readings: ReadonlyArray<{ usedBytes: number; maxBytes: number }>): { usedBytes: number; maxBytes: number } | null {
  let best: { usedBytes: number; maxBytes: number } | null = null;
  const share = (r: { usedBytes: number; maxBytes: number }) => (r.maxBytes > 0 ? r.usedBytes / r.maxBytes : -1);
  for (const r of readings) {
    if (!best || share(r) > share(best) || (share(r) === share(best) && r.usedBytes > best.usedBytes)) best = r;
  }
  return best;
}

export function createRedisMemoryWatch(deps: { redis: RedisClient; metrics: Metrics; logger: Logger; highWatermark: number }): RedisMemoryWatch {
  const { redis, metrics, logger, highWatermark } = deps;
  let last: RedisMemoryReading | null = null;
  let reading: Promise<RedisMemoryReading | null> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let refusedLogged = false;

  const readNow = async (): Promise<RedisMemoryReading | null> => {
    const nodes: Redis[] = redis instanceof Cluster ? redis.nodes('master') : [redis];
    try {
      const found = fullest((await Promise.all(nodes.map(async (n) => parseMemoryInfo(await n.info('memory'))))).filter((r) => r !== null));
      if (!found) return null;
      last = { ...found, ratio: found.maxBytes > 0 ? found.usedBytes / found.maxBytes : null, readAt: Date.now() };
      metrics.redisUsedMemory.set(last.usedBytes);
      metrics.redisMaxMemory.set(last.maxBytes);
      return last;
    } catch (err) {
      // INFO may be refused by an ACL (managed Redis): no watermark then, Redis' own OOM still guards.
      if (!refusedLogged && (err as Error).name === 'ReplyError') {
        refusedLogged = true;
        logger.warn({ err }, 'INFO memory refused: REDIS_MEMORY_HIGH_WATERMARK cannot be watched');
      }
      return null;
    }
  };
  const read = (): Promise<RedisMemoryReading | null> => {
    if (last && Date.now() - last.readAt < MAX_AGE_MS) return Promise.resolve(last);
    reading ??= readNow().finally(() => { reading = undefined; });
    return reading;
  };

  return {
    highWatermark,
    async aboveWatermark() {
      const r = await read();
      return r && r.ratio !== null && r.ratio >= highWatermark ? r : null;
    },
    last: () => last,
    start(intervalMs = 5_000) {
      timer ??= setInterval(() => void read(), intervalMs);
      timer.unref();
      void read();
    },
    stop() {
      clearInterval(timer);
      timer = undefined;
    },
  };
}
