// What the producer suites set up alike: a private Dovecot and a Redis (by default the test Redis,
// a Cluster under MAILSTREAM_TEST_REDIS=cluster) with a client on it, started together before the
// file's tests and removed after them, with no daemon left running.
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, expect } from 'vitest';
import { startDovecot, type Dovecot } from './dovecot.ts';
import { killAllTracked } from './processes.ts';
import { startTestRedis } from './test-redis.ts';

interface StartedRedis { client(): Redis; destroy(): Promise<void> }

export interface ProducerTestbed<R extends StartedRedis> {
  dovecot: Dovecot;
  redisServer: R;
  redis: Redis;
}

/** Registers the file's beforeAll / afterAll; the fields are there once beforeAll ran. */
export function useProducerTestbed<R extends StartedRedis = Awaited<ReturnType<typeof startTestRedis>>>(
  options: { dovecot?: Parameters<typeof startDovecot>[0]; startRedis?: () => Promise<R> } = {},
): ProducerTestbed<R> {
  const bed = {} as ProducerTestbed<R>;
  const startRedis = options.startRedis ?? (startTestRedis as unknown as () => Promise<R>);
  beforeAll(async () => {
    [bed.dovecot, bed.redisServer] = await Promise.all([startDovecot(options.dovecot), startRedis()]);
    bed.redis = bed.redisServer.client();
  });
  afterAll(async () => {
    bed.redis?.disconnect();
    await bed.dovecot?.destroy();
    await bed.redisServer?.destroy();
    expect(await killAllTracked()).toBe(0);
  });
  return bed;
}
