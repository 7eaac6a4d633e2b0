// Dead letters end to end: a poison email reaches the DLQ after MAX_ATTEMPTS with its error, a
// permanent 4xx after one attempt, and `mailstream dlq replay` sends them back to be delivered
// once the receiver accepts them.
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { accountKeys } from '../../src/core/keys.ts';
import { runCli, startDaemon } from '../helpers/cli.ts';
import { appendEmails } from '../helpers/entries.ts';
import { eventually, freePort } from '../helpers/ports.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.ts';

const ACCOUNT = 'user@example.com';
const POISON = '<msg-5@example.com>';
const REFUSED = '<msg-7@example.com>';
/** A change event (TRACK_CHANGES) the receiver refuses until fixed. */
const REFUSED_EVENT = '<msg-9@example.com>#deleted#INBOX:1:9';
let redisServer: RedisServer;
let redis: Redis;
let receiver: WebhookReceiver;
let fixed = false;

beforeAll(async () => {
  redisServer = await startRedisServer();
  redis = redisServer.client();
  receiver = await startWebhookReceiver((r) => {
    if (!fixed && r.key === POISON) return { status: 500, body: 'handler crashed on this one' };
    if (!fixed && (r.key === REFUSED || r.key === REFUSED_EVENT)) return { status: 422, body: '{"error":"recipient unknown"}' };
    return { status: 200 };
  });
});

afterAll(async () => {
  await receiver?.close();
  redis?.disconnect();
  await redisServer?.destroy();
  expect(await killAllTracked()).toBe(0);
});

it('dead-letters a poison email after MAX_ATTEMPTS and a 4xx after one attempt; dlq replay delivers them once the sink is fixed', async () => {
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const keys = accountKeys(prefix, ACCOUNT);
  const env = { REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: prefix, IMAP_USER: ACCOUNT };
  await appendEmails(redis, prefix, ACCOUNT, 20);
  const worker = startDaemon(['worker'], {
    ...env, SINK_URL: receiver.url, HTTP_PORT: String(await freePort()), MAX_ATTEMPTS: '3', RETRY_BASE_MS: '100', READ_BLOCK_MS: '200',
  });
  await eventually(async () => (await redis.xlen(keys.dlq)) === 2, { what: 'two dead letters' });
  expect(receiver.attemptsOf(POISON)).toHaveLength(3);
  expect(receiver.attemptsOf(REFUSED)).toHaveLength(1);
  expect(new Set(receiver.accepted)).toHaveProperty('size', 18);
  const pending = await redis.xpending(keys.stream, 'workers');
  expect(pending[0]).toBe(0);

  const list = await runCli(['dlq', 'list', '--json'], env);
  expect(list.code).toBe(0);
  const letters = JSON.parse(list.stdout) as Array<{ id: string; key: string; reason: string; error: string; attempts: number; consumer: string; firstFailureAt: string; lastFailureAt: string }>;
  const poison = letters.find((l) => l.key === POISON)!;
  const refused = letters.find((l) => l.key === REFUSED)!;
  expect(poison).toMatchObject({ reason: 'max-attempts', attempts: 3 });
  expect(poison.error).toMatch(/500: handler crashed on this one/);
  expect(Date.parse(poison.lastFailureAt)).toBeGreaterThan(Date.parse(poison.firstFailureAt));
  expect(poison.consumer).not.toBe('');
  expect(refused).toMatchObject({ reason: 'permanent', attempts: 1 });
  expect(refused.error).toMatch(/422: \{"error":"recipient unknown"\}/);

  const shown = await runCli(['dlq', 'show', poison.id], env);
  expect(shown.code).toBe(0);
  expect((JSON.parse(shown.stdout) as { email: { key: string } }).email.key).toBe(POISON);
  expect((await runCli(['dlq', 'show', '1-1'], env)).code).toBe(1);
  expect((await runCli(['dlq', 'replay'], env)).code).toBe(2);
  expect((await runCli(['dlq', 'purge'], env)).code).toBe(2);

  fixed = true;
  const replay = await runCli(['dlq', 'replay', '--all'], env);
  expect(replay.code).toBe(0);
  expect(replay.stdout).toContain('replayed 2 dead letter(s)');
  await eventually(() => receiver.accepted.includes(POISON) && receiver.accepted.includes(REFUSED), { what: 'replayed emails delivered' });
  expect(await redis.xlen(keys.dlq)).toBe(0);
  expect(receiver.accepted.filter((k) => k === POISON)).toHaveLength(1);

  expect((await runCli(['dlq', 'list'], env)).stdout).toContain('no dead letters');
  expect(await worker.stop()).toBe(0);
});

it('purges the DLQ only with --yes', async () => {
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const keys = accountKeys(prefix, ACCOUNT);
  await redis.xadd(keys.dlq, '*', 'key', 'k', 'email', '{}', 'reason', 'permanent');
  const env = { REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: prefix, IMAP_USER: ACCOUNT };
  const purged = await runCli(['dlq', 'purge', '--yes'], env);
  expect(purged.code).toBe(0);
  expect(purged.stdout).toContain('purged 1 dead letter(s)');
  expect(await redis.exists(keys.dlq)).toBe(0);
});

it('a change event keeps its type through the DLQ and back', async () => {
  fixed = false;
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const keys = accountKeys(prefix, ACCOUNT);
  const env = { REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: prefix, IMAP_USER: ACCOUNT };
  const event = { v: 3, type: 'message.deleted', key: REFUSED_EVENT, messageKey: '<msg-9@example.com>', account: ACCOUNT, mailbox: 'INBOX', uidValidity: '1', uid: 9, observedAt: new Date().toISOString() };
  await redis.xadd(keys.stream, '*', 'key', REFUSED_EVENT, 'email', JSON.stringify(event), 'type', 'message.deleted');
  const worker = startDaemon(['worker'], { ...env, SINK_URL: receiver.url, HTTP_PORT: String(await freePort()), READ_BLOCK_MS: '200' });
  await eventually(async () => (await redis.xlen(keys.dlq)) === 1, { what: 'the event dead-lettered' });
  const [, fields] = (await redis.xrange(keys.dlq, '-', '+'))[0]!;
  expect(fields.slice(0, 6)).toEqual(['key', REFUSED_EVENT, 'email', JSON.stringify(event), 'type', 'message.deleted']);
  fixed = true;
  expect((await runCli(['dlq', 'replay', '--all'], env)).code).toBe(0);
  await eventually(() => receiver.accepted.includes(REFUSED_EVENT), { what: 'the replayed event delivered' });
  const delivered = receiver.requests.filter((r) => r.key === REFUSED_EVENT);
  expect(delivered.map((r) => r.headers['x-mailstream-event'])).toEqual(['message.deleted', 'message.deleted']);
  expect(await worker.stop()).toBe(0);
});
