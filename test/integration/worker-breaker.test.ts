// A webhook that is down for a while: the breaker opens, reading pauses, no email is
// dead-lettered for it, and everything is delivered once the receiver is back.
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

beforeAll(async () => {
  redisServer = await startRedisServer();
  redis = redisServer.client();
  receiver = await startWebhookReceiver();
});

afterAll(async () => {
  await receiver?.close();
  redis?.disconnect();
  await redisServer?.destroy();
  expect(await killAllTracked()).toBe(0);
});

function series(metrics: string, name: string): number {
  return Number(new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} (\\S+)$`, 'm').exec(metrics)?.[1]);
}

it('opens the breaker while the webhook is down, dead-letters nothing, and delivers everything after', async () => {
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const keys = accountKeys(prefix, ACCOUNT);
  const port = await freePort();
  const metrics = async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const worker = startDaemon(['worker'], {
    REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: prefix, IMAP_USER: ACCOUNT, SINK_URL: receiver.url, HTTP_PORT: String(port),
    MAX_ATTEMPTS: '3', RETRY_BASE_MS: '200', READ_BLOCK_MS: '200',
  });
  const first = await appendEmails(redis, prefix, ACCOUNT, 50);
  await eventually(() => new Set(receiver.accepted).size === 50, { what: 'first 50 delivered' });

  await receiver.down();
  const rest = await appendEmails(redis, prefix, ACCOUNT, 300, 50);
  await worker.waitForLog((l) => l.msg === 'circuit breaker opened', 'breaker open');
  const ready = await fetch(`http://127.0.0.1:${port}/ready`);
  expect(ready.status).toBe(503);
  expect(((await ready.json()) as { reasons: string[] }).reasons.join(' ')).toContain('circuit breaker open');
  // Down for a while: more failed half-open trials than MAX_ATTEMPTS, none of them charged.
  await eventually(async () => series(await metrics(), 'mailstream_circuit_breaker_opens_total{account="*",breaker="sink"}') >= 4, { what: 'breaker re-opened after failed trials' });
  expect(series(await metrics(), 'mailstream_circuit_breaker_state{account="*",breaker="sink"}')).toBe(2);
  // Reading paused: most of the new entries were never even read.
  const groups = (await redis.xinfo('GROUPS', keys.stream)) as unknown[][];
  expect(Number(groups[0]![groups[0]!.indexOf('lag') + 1])).toBeGreaterThan(0);

  await receiver.up();
  await eventually(() => new Set(receiver.accepted).size === 350, { what: 'all 350 delivered' });
  expect(new Set(receiver.accepted)).toEqual(new Set([...first, ...rest]));
  expect(await redis.xlen(keys.dlq)).toBe(0);
  await eventually(async () => (await redis.xpending(keys.stream, 'workers'))[0] === 0, { what: 'nothing pending' });
  const after = await metrics();
  expect(series(after, 'mailstream_emails_dead_lettered_total{reason="max-attempts"}')).toBe(0);
  expect(series(after, 'mailstream_circuit_breaker_state{account="*",breaker="sink"}')).toBe(0);
  expect((await fetch(`http://127.0.0.1:${port}/ready`)).status).toBe(200);
  expect(await worker.stop()).toBe(0);
});
