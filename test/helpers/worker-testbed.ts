// What the worker suites set up alike: a Redis (by default the test Redis, a Cluster under
// MAILSTREAM_TEST_REDIS=cluster), a client on it, a webhook receiver and a scratch directory,
// made before the file's tests and removed after them, with no daemon left running.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, expect } from 'vitest';
import { killAllTracked } from './processes.ts';
import { startTestRedis } from './test-redis.ts';
import { startWebhookReceiver, type WebhookReceiver } from './webhook-receiver.ts';

interface StartedRedis { client(): Redis; destroy(): Promise<void> }

export interface WorkerTestbed<R extends StartedRedis> {
  redisServer: R;
  redis: Redis;
  receiver: WebhookReceiver;
  dir: string;
}

/** Registers the file's beforeAll / afterAll; the fields are there once beforeAll ran. */
export function useWorkerTestbed<R extends StartedRedis = Awaited<ReturnType<typeof startTestRedis>>>(
  name: string,
  startRedis: () => Promise<R> = startTestRedis as unknown as () => Promise<R>,
): WorkerTestbed<R> {
  const bed = {} as WorkerTestbed<R>;
  beforeAll(async () => {
    bed.redisServer = await startRedis();
    bed.redis = bed.redisServer.client();
    bed.receiver = await startWebhookReceiver();
    bed.dir = mkdtempSync(join(tmpdir(), `ms-${name}-`));
  });
  afterAll(async () => {
    await bed.receiver?.close();
    bed.redis?.disconnect();
    await bed.redisServer?.destroy();
    if (bed.dir) rmSync(bed.dir, { recursive: true, force: true });
    expect(await killAllTracked()).toBe(0);
  });
  return bed;
}
