// Backpressure and safe trimming, checked before each batch is fetched. The stream is trimmed only
// below what every consumer group has acknowledged (trimStream script); when it still holds
// STREAM_MAX_LEN entries, or a group lags by more than MAX_CONSUMER_LAG, fetching pauses until
// consumers catch up. It also pauses while the blob store does not take writes (probing it until it
// does) and while Redis memory is at REDIS_MEMORY_HIGH_WATERMARK of maxmemory. Pausing is the only
// answer that loses nothing.
import { sleep } from '../core/backoff.ts';
import type { AccountKeys } from '../core/keys.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import type { RedisClient } from '../core/redis.ts';
import { readStreamStats } from '../core/stream-stats.ts';
import type { BlobHealth } from './blob-health.ts';
import type { RedisMemoryWatch } from './redis-memory.ts';

export type PauseReason = 'stream-full' | 'consumer-lag' | 'redis-memory' | 'blob-store';

const PAUSE_REASONS: readonly PauseReason[] = ['stream-full', 'consumer-lag', 'redis-memory', 'blob-store'];

const PAUSED_BECAUSE: Record<PauseReason, string> = {
  'stream-full': 'fetching paused: consumers must catch up',
  'consumer-lag': 'fetching paused: consumers must catch up',
  'redis-memory': 'fetching paused: Redis memory is at the high watermark',
  'blob-store': 'fetching paused: the blob store does not take writes',
};

/** How often a paused mailbox looks again; short, as resuming should follow consumers closely. */
const RECHECK_MS = 500;
/** Most entries one trim removes, to keep the script short. */
const TRIM_CHUNK = 10_000;

export interface StreamGate {
  /** Resolves when there is room for `incoming` more entries (or the signal aborts). */
  waitForRoom(mailbox: string, incoming: number, signal: AbortSignal, onPause?: (reason: PauseReason | null) => void): Promise<void>;
}

export function createStreamGate(deps: {
  redis: RedisClient; keys: AccountKeys; metrics: Metrics; logger: Logger; maxLen: number; maxLag: number;
  blobs?: BlobHealth | undefined; memory?: RedisMemoryWatch | undefined;
}): StreamGate {
  const { redis, keys, metrics, logger } = deps;
  for (const reason of PAUSE_REASONS) metrics.backpressurePauses.inc({ account: keys.account, reason }, 0);

  const blocked = async (incoming: number): Promise<{ reason: PauseReason; detail: Record<string, unknown> } | null> => {
    if (deps.blobs && !deps.blobs.available && !await deps.blobs.probe()) {
      return { reason: 'blob-store', detail: { store: deps.blobs.store.location, error: deps.blobs.lastError() } };
    }
    const memory = await deps.memory?.aboveWatermark();
    if (memory) return { reason: 'redis-memory', detail: { usedBytes: memory.usedBytes, maxBytes: memory.maxBytes, highWatermark: deps.memory!.highWatermark } };
    // Room for what is about to be appended keeps the stream at or under STREAM_MAX_LEN.
    const target = Math.max(0, deps.maxLen - incoming);
    const [removed, length] = await redis.trimStream(keys.stream, target, TRIM_CHUNK);
    if (removed > 0) metrics.streamTrimmed.inc({ account: keys.account }, removed);
    if (length > target) return { reason: 'stream-full', detail: { length, maxLen: deps.maxLen } };
    const stats = await readStreamStats(redis, keys);
    const lagging = stats.groups.find((g) => g.lag !== null && g.lag > deps.maxLag);
    if (lagging) return { reason: 'consumer-lag', detail: { group: lagging.name, lag: lagging.lag, maxLag: deps.maxLag } };
    return null;
  };

  return {
    async waitForRoom(mailbox, incoming, signal, onPause) {
      let pausedFor: PauseReason | null = null;
      while (!signal.aborted) {
        const block = await blocked(incoming);
        if (block === null) break;
        if (block.reason !== pausedFor) {
          if (pausedFor) metrics.producerPaused.set({ account: keys.account, mailbox, reason: pausedFor }, 0);
          pausedFor = block.reason;
          metrics.backpressurePauses.inc({ account: keys.account, reason: block.reason });
          metrics.producerPaused.set({ account: keys.account, mailbox, reason: block.reason }, 1);
          logger.warn({ mailbox, reason: block.reason, ...block.detail }, PAUSED_BECAUSE[block.reason]);
          onPause?.(block.reason);
        }
        await sleep(RECHECK_MS, signal);
      }
      if (pausedFor) {
        metrics.producerPaused.set({ account: keys.account, mailbox, reason: pausedFor }, 0);
        logger.info({ mailbox, reason: pausedFor }, 'fetching resumed');
        onPause?.(null);
      }
    },
  };
}
