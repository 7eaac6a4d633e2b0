// Retries through the real worker process: a webhook that fails the first two attempts for 10%
// of the keys gets every email in the end, each attempt counted, the gaps between attempts of a
// key growing; a 429's Retry-After is honoured.
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
const COUNT = 200;
const flaky = (key: string) => Number(/msg-(\d+)@/.exec(key)?.[1]) % 10 === 3;
const RATE_LIMITED = '<msg-4@example.com>';
let redisServer: RedisServer;
let redis: Redis;
let receiver: WebhookReceiver;

beforeAll(async () => {
  redisServer = await startRedisServer();
  redis = redisServer.client();
  receiver = await startWebhookReceiver((r) => {
    if (flaky(r.key) && r.attempt <= 2) return { status: r.attempt === 1 ? 500 : 408, body: 'try later' };
    if (r.key === RATE_LIMITED && r.attempt === 1) return { status: 429, headers: { 'retry-after': '2' } };
    return { status: 200 };
  });
});

afterAll(async () => {
  await receiver?.close();
  redis?.disconnect();
  await redisServer?.destroy();
  expect(await killAllTracked()).toBe(0);
});

it('delivers everything despite failing attempts, counting attempts and spacing them further apart each time', async () => {
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const keys = await appendEmails(redis, prefix, ACCOUNT, COUNT);
  const port = await freePort();
  const worker = startDaemon(['worker'], {
    REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: prefix, IMAP_USER: ACCOUNT, SINK_URL: receiver.url, HTTP_PORT: String(port),
    // Small batches: a retry is timed from the batch's answer, so a long batch would blur the gaps.
    MAX_ATTEMPTS: '5', RETRY_BASE_MS: '600', READ_BLOCK_MS: '500', READ_BATCH_SIZE: '10',
  });
  await eventually(() => new Set(receiver.accepted).size === COUNT, { what: 'every key accepted' });
  expect(receiver.accepted).toHaveLength(COUNT); // each key accepted exactly once

  const failing = keys.filter(flaky);
  expect(failing).toHaveLength(COUNT / 10);
  const gaps: Array<[number, number]> = [];
  for (const key of failing) {
    const attempts = receiver.attemptsOf(key);
    expect(attempts.map((a) => a.headers['x-mailstream-attempt'])).toEqual(['1', '2', '3']);
    expect(new Set(attempts.map((a) => a.headers['idempotency-key']))).toEqual(new Set([key]));
    const [first, second, third] = attempts.map((a) => a.at) as [number, number, number];
    // A retry never comes before its delay: 600 ms base, doubled per attempt, up to a quarter
    // jittered away. These are lower bounds only, so a slow machine cannot break them.
    expect(second - first).toBeGreaterThanOrEqual(450);
    expect(third - second).toBeGreaterThanOrEqual(900);
    gaps.push([second - first, third - second]);
  }
  // Growing: on average the second wait is the longer one (expected about 1,050 ms against 525 ms); a
  // single key can tie at the jitter's edge, so the mean is what is compared.
  const mean = (i: 0 | 1) => gaps.reduce((sum, g) => sum + g[i], 0) / gaps.length;
  expect(mean(1)).toBeGreaterThan(mean(0));
  const limited = receiver.attemptsOf(RATE_LIMITED);
  expect(limited).toHaveLength(2);
  expect(limited[1]!.at - limited[0]!.at).toBeGreaterThanOrEqual(1_900); // Retry-After: 2 (seconds)

  const k = accountKeys(prefix, ACCOUNT);
  expect(await redis.xlen(k.dlq)).toBe(0);
  expect(await redis.hlen(k.group('workers').failures)).toBe(0);
  expect(await redis.zcard(k.group('workers').retries)).toBe(0);
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  expect(metrics).toContain(`mailstream_emails_retried_total{sink="webhook"} ${failing.length * 2 + 1}`);
  expect(metrics).toContain(`mailstream_emails_delivered_total{sink="webhook"} ${COUNT}`);
  expect(await worker.stop()).toBe(0);
});
