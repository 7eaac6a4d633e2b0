// SIGTERM: the worker stops reading, lets a delivery under way finish when it can within
// SHUTDOWN_TIMEOUT_MS, gives up on one that cannot and exits 0; what it did not finish stays
// pending and the next worker delivers it, with the same Idempotency-Key.
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { accountKeys } from '../../src/core/keys.ts';
import { startDaemon } from '../helpers/cli.ts';
import { appendEmails } from '../helpers/entries.ts';
import { eventually, freePort } from '../helpers/ports.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.ts';

const ACCOUNT = 'user@example.com';
let redisServer: RedisServer;
let redis: Redis;
let receiver: WebhookReceiver;
let slowMs = 0;

beforeAll(async () => {
  redisServer = await startRedisServer();
  redis = redisServer.client();
  receiver = await startWebhookReceiver(() => ({ status: 200, delayMs: slowMs }));
});

afterAll(async () => {
  await receiver?.close();
  redis?.disconnect();
  await redisServer?.destroy();
  expect(await killAllTracked()).toBe(0);
});

async function worker(prefix: string, extra: Record<string, string>) {
  return startDaemon(['worker'], {
    REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: prefix, IMAP_USER: ACCOUNT, SINK_URL: receiver.url, HTTP_PORT: String(await freePort()),
    READ_BLOCK_MS: '200', CLAIM_IDLE_MS: '500', CLAIM_INTERVAL_MS: '200', ...extra,
  });
}

it('finishes a slow delivery that fits in the timeout, then exits 0', async () => {
  const prefix = `t${randomBytes(4).toString('hex')}`;
  slowMs = 1_500;
  const [key] = await appendEmails(redis, prefix, ACCOUNT, 1);
  const w = await worker(prefix, { SHUTDOWN_TIMEOUT_MS: '20000' });
  await eventually(() => receiver.attemptsOf(key!).length === 1, { what: 'delivery under way' });
  expect(await w.stop('SIGTERM')).toBe(0);
  expect(receiver.accepted).toContain(key);
  expect((await redis.xpending(accountKeys(prefix, ACCOUNT).stream, 'workers'))[0]).toBe(0);
});

it('gives up on a delivery longer than the timeout, exits 0, and the next worker delivers it with the same key', async () => {
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const stream = accountKeys(prefix, ACCOUNT).stream;
  slowMs = 60_000;
  const [key] = await appendEmails(redis, prefix, ACCOUNT, 1, 100);
  const first = await worker(prefix, { SHUTDOWN_TIMEOUT_MS: '1000' });
  await eventually(() => receiver.attemptsOf(key!).length === 1, { what: 'delivery under way' });
  expect(await first.stop('SIGTERM')).toBe(0);
  expect(first.logs().some((l) => l.msg.startsWith('deliveries still under way at the shutdown timeout'))).toBe(true);
  expect(receiver.accepted).not.toContain(key);
  const pending = await redis.xpending(stream, 'workers');
  expect(pending[0]).toBe(1);

  slowMs = 0;
  const next = await worker(prefix, { SHUTDOWN_TIMEOUT_MS: '5000' });
  await eventually(() => receiver.accepted.includes(key!), { what: 'delivered by the next worker' });
  const attempts = receiver.attemptsOf(key!);
  expect(attempts.length).toBeGreaterThanOrEqual(2);
  expect(new Set(attempts.map((a) => a.headers['idempotency-key']))).toEqual(new Set([key]));
  await eventually(async () => (await redis.xpending(stream, 'workers'))[0] === 0, { what: 'acknowledged' });
  expect(await next.stop('SIGTERM')).toBe(0);
});
