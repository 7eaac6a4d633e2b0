// The worker's bookkeeping under a Redis that refuses writes. Outcomes the sink gave are kept in
// the process and recorded when Redis takes writes again: nothing is lost, nothing reaches the
// webhook twice, and reading waits meanwhile. Runs on a single Redis and, in CI's second pass,
// on a Redis Cluster (MAILSTREAM_TEST_REDIS=cluster).
import { randomBytes } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { afterAll, afterEach, expect, it } from 'vitest';
import { accountKeys } from '../../src/core/keys.ts';
import { startDaemon, type Daemon } from '../helpers/cli.ts';
import { appendEmails } from '../helpers/entries.ts';
import { eventually, freePort } from '../helpers/ports.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { startTestRedis, type TestRedis } from '../helpers/test-redis.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.ts';

const ACCOUNT = 'user@example.com';
const COUNT = 2_000;
/** Every 250th email is refused by the receiver for good: it, and only it, belongs in the DLQ. */
const isPoison = (key: string) => Number(/msg-(\d+)@/.exec(key)?.[1]) % 250 === 7;

let redisServer: TestRedis | undefined;
let redis: Redis | undefined;
let receiver: WebhookReceiver | undefined;

afterEach(async () => {
  await receiver?.close();
  redis?.disconnect();
  await redisServer?.destroy();
  receiver = undefined; redis = undefined; redisServer = undefined;
});

afterAll(async () => {
  expect(await killAllTracked()).toBe(0);
});

/** Every master of the test Redis (one for a single server). */
function masters(client: Redis): Redis[] {
  const cluster = client as unknown as Cluster;
  return typeof cluster.nodes === 'function' ? cluster.nodes('master') : [client];
}

async function usedMemory(node: Redis): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await node.info('memory'))?.[1]);
}

async function metric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const match = new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text);
  return Number(match?.[1] ?? NaN);
}

async function startWorkers(server: TestRedis, prefix: string, sink: string): Promise<Array<{ daemon: Daemon; port: number }>> {
  return Promise.all([1, 2].map(async (n) => {
    const port = await freePort();
    const daemon = startDaemon(['worker'], {
      ...server.env, MAILSTREAM_PREFIX: prefix, IMAP_USER: ACCOUNT, SINK_URL: sink, HTTP_PORT: String(port), CONSUMER_NAME: `w${n}`,
      // A short CLAIM_IDLE_MS: outcomes held longer than this would be claimed and sent again by
      // the other worker if nothing kept them from looking orphaned.
      CLAIM_IDLE_MS: '1500', CLAIM_INTERVAL_MS: '300', READ_BLOCK_MS: '200', READ_BATCH_SIZE: '50', RETRY_BASE_MS: '200', WORKER_CONCURRENCY: '8',
    });
    return { daemon, port };
  }));
}

/** A receiver refusing the poison for good, 2,000 emails in the stream, two workers on it. */
async function twoWorkersOnPoisonedStream(server: TestRedis, client: Redis) {
  receiver = await startWebhookReceiver((req) => (isPoison(req.key) ? { status: 422, body: 'unknown customer' } : { status: 200, delayMs: 3 }));
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const all = await appendEmails(client, prefix, ACCOUNT, COUNT);
  const workers = await startWorkers(server, prefix, receiver.url);
  return { r: receiver, keys: accountKeys(prefix, ACCOUNT), all, good: all.filter((k) => !isPoison(k)), workers };
}

/** Redis full: every write that needs memory is refused. The limit goes below what is used, so
 * that client buffers shrinking now and then cannot let a write through. */
async function fillUp(client: Redis): Promise<void> {
  for (const node of masters(client)) {
    await node.config('SET', 'maxmemory-policy', 'noeviction');
    await node.config('SET', 'maxmemory', String(Math.floor((await usedMemory(node)) / 2)));
  }
}

async function makeRoom(client: Redis): Promise<void> {
  for (const node of masters(client)) await node.config('SET', 'maxmemory', '0');
}

function answeredTwice(r: WebhookReceiver): string[] {
  const seen = new Set<string>();
  const twice = new Set<string>();
  for (const key of r.accepted) { if (seen.has(key)) twice.add(key); seen.add(key); }
  return [...twice];
}

it('holds every outcome while Redis is full (maxmemory, noeviction) for 15 s: nothing lost, nothing sent twice, only the poison dead-lettered', async () => {
  redisServer = await startTestRedis();
  redis = redisServer.client();
  const { r, keys, all, good, workers } = await twoWorkersOnPoisonedStream(redisServer, redis);
  await eventually(() => r.accepted.length >= 300, { what: '300 delivered before Redis fills up' });
  await fillUp(redis);
  const fullAt = Date.now();
  await eventually(async () => {
    const ready = await fetch(`http://127.0.0.1:${workers[0]!.port}/ready`);
    return ready.status === 503 && ((await ready.json()) as { reasons: string[] }).reasons.join(' ').includes('redis refuses writes (redis-oom)');
  }, { what: '/ready names Redis refusing writes' });
  expect(await metric(workers[0]!.port, 'mailstream_settle_blocked')).toBe(1);
  expect(await metric(workers[0]!.port, 'mailstream_unsettled_outcomes')).toBeGreaterThan(0);
  // Reading stops: while it is full, the webhook gets at most what was in hand when it filled.
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, 15_000 - (Date.now() - fullAt))));
  const acceptedWhileFull = r.accepted.length;
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  expect(r.accepted.length).toBe(acceptedWhileFull);

  await makeRoom(redis);
  await eventually(() => new Set(r.accepted).size === good.length, { what: 'every good email delivered', attempts: 900 });
  await eventually(async () => (await redis!.xpending(keys.stream, 'workers'))[0] === 0, { what: 'nothing pending' });

  expect(answeredTwice(r)).toEqual([]);
  expect(new Set(r.accepted)).toEqual(new Set(good));
  const dead = await redis.xrange(keys.dlq, '-', '+');
  expect(dead.map(([, f]) => f[f.indexOf('key') + 1]).sort()).toEqual(all.filter(isPoison).sort());
  for (const { daemon, port } of workers) {
    // One warning per episode, not one per batch.
    const warnings = daemon.logs().filter((l) => l.msg.startsWith('redis refuses to record delivery outcomes'));
    expect(warnings.length).toBeGreaterThan(0);
    expect(warnings.length).toBeLessThanOrEqual(3);
    expect(daemon.logs().some((l) => l.msg.startsWith('redis records delivery outcomes again'))).toBe(true);
    expect(await metric(port, 'mailstream_settle_blocked')).toBe(0);
    expect((await fetch(`http://127.0.0.1:${port}/ready`)).status).toBe(200);
  }
  for (const { daemon } of workers) expect(await daemon.stop()).toBe(0);
});

it('after a kill -9 of Redis mid-batch (AOF everysec), repeats are only entries recorded in the last second before the kill, each once', async () => {
  redisServer = await startTestRedis({ aof: true, appendfsync: 'everysec' });
  redis = redisServer.client();
  redis.on('error', () => undefined); // refused while Redis is down; the test waits it out
  const { r, keys, all, good, workers } = await twoWorkersOnPoisonedStream(redisServer, redis);
  await eventually(() => r.accepted.length >= 500, { what: '500 delivered before the kill' });

  await redisServer.kill();
  const killedAt = Date.now();
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  await redisServer.start();

  await eventually(() => new Set(r.accepted).size === good.length, { what: 'every good email delivered', attempts: 900 });
  await eventually(async () => (await redis!.xpending(keys.stream, 'workers'))[0] === 0, { what: 'nothing pending' });

  // A repeat is an email whose acknowledgement Redis lost with the kill: first accepted in the
  // last second or so before it (AOF everysec), or while its settle was on the way.
  const firstAccepted = new Map<string, number>();
  for (const req of r.requests) if (req.headers['idempotency-key'] && !firstAccepted.has(req.key) && !isPoison(req.key)) firstAccepted.set(req.key, req.at);
  const repeats = answeredTwice(r);
  for (const key of repeats) {
    expect(r.accepted.filter((k) => k === key)).toHaveLength(2);
    expect(firstAccepted.get(key)!).toBeGreaterThanOrEqual(killedAt - 2_000);
  }
  expect(new Set(r.accepted)).toEqual(new Set(good));
  expect(await redis.xlen(keys.dlq)).toBe(all.filter(isPoison).length);
  for (const { daemon } of workers) expect(await daemon.stop()).toBe(0);
});

it('on SIGTERM while Redis refuses writes, records what it holds once Redis takes writes again within SHUTDOWN_TIMEOUT_MS, then exits 0', async () => {
  redisServer = await startTestRedis();
  redis = redisServer.client();
  const r = await startWebhookReceiver(() => ({ status: 200, delayMs: 3 }));
  receiver = r;
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const keys = accountKeys(prefix, ACCOUNT);
  const all = await appendEmails(redis, prefix, ACCOUNT, 400);
  const port = await freePort();
  const worker = startDaemon(['worker'], {
    ...redisServer.env, MAILSTREAM_PREFIX: prefix, IMAP_USER: ACCOUNT, SINK_URL: r.url, HTTP_PORT: String(port),
    READ_BLOCK_MS: '200', READ_BATCH_SIZE: '50', SHUTDOWN_TIMEOUT_MS: '20000',
  });
  await eventually(() => r.accepted.length >= 50, { what: 'some delivered' });
  await fillUp(redis);
  await eventually(async () => (await metric(port, 'mailstream_settle_blocked')) === 1, { what: 'outcomes held' });
  const held = await metric(port, 'mailstream_unsettled_outcomes');
  expect(held).toBeGreaterThan(0);
  const stopped = worker.stop();
  await worker.waitForLog((l) => l.msg === 'shutting down', 'shutdown begun');
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  await makeRoom(redis);
  expect(await stopped).toBe(0);
  // Everything the webhook took is acknowledged; what stays pending (read ahead, never sent) is
  // only what it never got, left for another worker.
  const pending = (await redis.xpending(keys.stream, 'workers', '-', '+', 1000)) as Array<[string, string, number, number]>;
  const delivered = new Set(r.accepted);
  for (const [id] of pending) {
    const [entry] = await redis.xrange(keys.stream, id, id);
    expect(delivered.has(entry![1][entry![1].indexOf('key') + 1]!)).toBe(false);
  }
  expect(delivered.size).toBe(r.accepted.length);
  expect(all).toEqual(expect.arrayContaining([...delivered]));
  expect(worker.logs().some((l) => l.msg.startsWith('outcomes not recorded'))).toBe(false);
});
