// Redis memory watched by the producer: at REDIS_MEMORY_HIGH_WATERMARK of maxmemory fetching
// pauses (metric, /status, /ready stays 200: nothing is broken), with maxmemory 0 it never does,
// and once there is room again the mail flows.
import { describe, expect, it } from 'vitest';
import { accountKeys } from '../../src/core/keys.ts';
import { startDaemon } from '../helpers/cli.ts';
import { generateCorpus } from '../helpers/corpus.ts';
import { eventually } from '../helpers/ports.ts';
import { producerEnv } from '../helpers/producer-env.ts';
import { useProducerTestbed } from '../helpers/producer-testbed.ts';
import { startRedisServer } from '../helpers/redis-server.ts';
import { metricValue } from '../helpers/stream-read.ts';

const USER = 'user@example.com';
const bed = useProducerTestbed({ startRedis: startRedisServer });

const usedMemory = async () => Number(/used_memory:(\d+)/.exec(await bed.redis.info('memory'))![1]);

describe('Redis memory high watermark', () => {
  it('pauses fetching while used_memory is at the watermark of maxmemory, and resumes when there is room', async () => {
    const corpus = generateCorpus(50, { seed: 91, tag: 'memory' });
    bed.dovecot.seed(USER, 'Memory', corpus.map((m) => m.raw));
    // Used memory is two thirds of the limit: above a watermark of 0.5, far from Redis refusing writes.
    await bed.redis.config('SET', 'maxmemory', String(Math.ceil((await usedMemory()) * 1.5)));
    const env = producerEnv({ redisUrl: bed.redisServer.url, dovecot: bed.dovecot, mailboxes: ['Memory'], extra: { START_FROM: 'all', REDIS_MEMORY_HIGH_WATERMARK: '0.5' } });
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);
    const daemon = startDaemon(['producer'], env);
    try {
      const url = (await daemon.waitForLog((l) => l.msg === 'health and metrics listening')).url as string;
      const pause = await daemon.waitForLog((l) => l.msg === 'fetching paused: Redis memory is at the high watermark', 'the pause');
      expect(pause).toMatchObject({ reason: 'redis-memory', mailbox: 'Memory', highWatermark: 0.5 });
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metricValue(metrics, 'mailstream_producer_paused', 'mailbox="Memory",reason="redis-memory"')).toBe(1);
      expect(metricValue(metrics, 'mailstream_redis_maxmemory_bytes')).toBeGreaterThan(0);
      expect(metricValue(metrics, 'mailstream_redis_used_memory_bytes')).toBeGreaterThan(0);
      const status = await (await fetch(`${url}/status`)).json() as { redisMemory: Record<string, unknown>; mailboxes: Array<{ state: string; paused: string | null }> };
      expect(status.redisMemory).toMatchObject({ aboveWatermark: true, highWatermark: 0.5 });
      expect(status.mailboxes[0]).toMatchObject({ state: 'paused', paused: 'redis-memory' });
      expect(await bed.redis.xlen(keys.stream)).toBe(0);

      // No limit: no watermark.
      await bed.redis.config('SET', 'maxmemory', '0');
      await eventually(async () => (await bed.redis.xlen(keys.stream)) === corpus.length, { what: 'the mail once there is room' });
      await eventually(async () => metricValue(await (await fetch(`${url}/metrics`)).text(), 'mailstream_redis_maxmemory_bytes') === 0, { what: 'the gauge to follow' });
      const after = await (await fetch(`${url}/metrics`)).text();
      expect(metricValue(after, 'mailstream_producer_paused', 'mailbox="Memory",reason="redis-memory"')).toBe(0);
      expect(metricValue(after, 'mailstream_backpressure_pauses_total', 'reason="redis-memory"')).toBe(1);
      expect(daemon.logs().some((l) => l.msg === 'fetching resumed' && l.reason === 'redis-memory')).toBe(true);
    } finally {
      await bed.redis.config('SET', 'maxmemory', '0');
      expect(await daemon.stop()).toBe(0);
    }
  });
});
