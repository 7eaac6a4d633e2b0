// kill -9 of one of two workers in the middle of a batch: the survivor claims the dead one's
// pending entries once they are idle past CLAIM_IDLE_MS, nothing is lost, and the dead consumer,
// left with nothing pending, is removed from the group.
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { accountKeys } from '../../src/core/keys.ts';
import { pairs } from '../../src/core/stream-stats.ts';
import { startDaemon } from '../helpers/cli.ts';
import { appendEmails } from '../helpers/entries.ts';
import { eventually, freePort } from '../helpers/ports.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { startTestRedis, type TestRedis } from '../helpers/test-redis.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.ts';

const ACCOUNT = 'user@example.com';
const COUNT = 600;
let redisServer: TestRedis;
let redis: Redis;
let receiver: WebhookReceiver;

beforeAll(async () => {
  redisServer = await startTestRedis();
  redis = redisServer.client();
  receiver = await startWebhookReceiver(() => ({ status: 200, delayMs: 20 }));
});

afterAll(async () => {
  await receiver?.close();
  redis?.disconnect();
  await redisServer?.destroy();
  expect(await killAllTracked()).toBe(0);
});

async function consumers(stream: string): Promise<Map<string, number>> {
  const raw = (await redis.xinfo('CONSUMERS', stream, 'workers')) as unknown[];
  return new Map(raw.map((c) => { const p = pairs(c); return [String(p.name), Number(p.pending)]; }));
}

it('the surviving worker claims the pending entries of a worker killed mid-batch; nothing is lost', async () => {
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const stream = accountKeys(prefix, ACCOUNT).stream;
  const keys = await appendEmails(redis, prefix, ACCOUNT, COUNT);
  const env = {
    REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: prefix, IMAP_USER: ACCOUNT, SINK_URL: receiver.url, READ_BLOCK_MS: '200',
    READ_BATCH_SIZE: '50', WORKER_CONCURRENCY: '4', CLAIM_IDLE_MS: '1000', CLAIM_INTERVAL_MS: '300',
  };
  // The victim starts first and slowly (one delivery at a time: ~12 s for the lot alone), so it
  // is still mid-stream when the survivor is up, however slowly this machine starts processes.
  const victim = startDaemon(['worker'], { ...env, WORKER_CONCURRENCY: '1', CONSUMER_NAME: 'victim', HTTP_PORT: String(await freePort()) });
  await eventually(async () => (await consumers(stream)).get('victim')! > 0 && receiver.accepted.length > 20, { intervalMs: 10, attempts: 3000, what: 'victim mid-batch' });
  const survivorPort = await freePort();
  const survivor = startDaemon(['worker'], { ...env, CONSUMER_NAME: 'survivor', HTTP_PORT: String(survivorPort) });
  await eventually(async () => (await consumers(stream)).has('survivor'), { what: 'survivor reading' });

  // Kill the victim while it holds entries it has read but not acknowledged.
  await eventually(async () => (await consumers(stream)).get('victim')! > 0, { intervalMs: 10, what: 'victim holding entries' });
  victim.tracked.child.kill('SIGKILL');
  expect(await victim.tracked.exited).toBe('SIGKILL');
  expect((await consumers(stream)).get('victim')).toBeGreaterThan(0);

  await eventually(() => new Set(receiver.accepted).size === COUNT, { what: 'every key delivered' });
  expect(new Set(receiver.accepted)).toEqual(new Set(keys));
  await eventually(async () => (await redis.xpending(stream, 'workers'))[0] === 0, { what: 'nothing pending' });
  await eventually(async () => !(await consumers(stream)).has('victim'), { what: 'dead consumer removed' });
  expect([...(await consumers(stream)).keys()]).toEqual(['survivor']);

  const metrics = await (await fetch(`http://127.0.0.1:${survivorPort}/metrics`)).text();
  expect(Number(/^mailstream_orphans_claimed_total (\d+)/m.exec(metrics)?.[1])).toBeGreaterThan(0);
  expect(metrics).toMatch(/^mailstream_consumers_removed_total 1$/m);
  expect(await survivor.stop()).toBe(0);
});

it('a lone worker takes back entries of its own left pending (an acknowledgement that never reached Redis)', async () => {
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const stream = accountKeys(prefix, ACCOUNT).stream;
  const worker = startDaemon(['worker'], {
    REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: prefix, IMAP_USER: ACCOUNT, SINK_URL: receiver.url, HTTP_PORT: String(await freePort()),
    READ_BLOCK_MS: '200', CLAIM_IDLE_MS: '1000', CLAIM_INTERVAL_MS: '300', CONSUMER_NAME: 'solo',
  });
  await worker.waitForLog((l) => l.msg === 'worker started', 'worker start');
  await eventually(async () => (await consumers(stream)).has('solo'), { what: 'solo reading' });
  // Entries handed to `solo` that the running process never saw: as if its acknowledgements were lost.
  const keys = await appendEmails(redis, prefix, ACCOUNT, 5, 1000);
  await redis.xreadgroup('GROUP', 'workers', 'solo', 'COUNT', 5, 'STREAMS', stream, '>');
  await eventually(() => keys.every((k) => receiver.accepted.includes(k)), { what: 'own orphans delivered' });
  await eventually(async () => (await redis.xpending(stream, 'workers'))[0] === 0, { what: 'nothing pending' });
  expect(await worker.stop()).toBe(0);
});

it('entries read ahead behind a batch that turned slow are not taken for orphans by their own worker', async () => {
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const stream = accountKeys(prefix, ACCOUNT).stream;
  // The second batch of four (msg-4 to msg-7) is slow, the others quick.
  const slowKey = (key: string) => { const n = Number(/msg-(\d+)@/.exec(key)?.[1]); return n >= 4 && n <= 7; };
  const sink = await startWebhookReceiver((r) => ({ status: 200, delayMs: slowKey(r.key) ? 400 : 0 }));
  try {
    const keys = await appendEmails(redis, prefix, ACCOUNT, 12);
    // One delivery at a time: the first batch is quick, so the worker reads the third while the
    // second takes ~1.6 s, past CLAIM_IDLE_MS. Claimed and delivered by the orphan path as well,
    // msg-8 to msg-11 would be sent twice.
    const worker = startDaemon(['worker'], {
      REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: prefix, IMAP_USER: ACCOUNT, SINK_URL: sink.url, HTTP_PORT: String(await freePort()),
      READ_BLOCK_MS: '200', READ_BATCH_SIZE: '4', WORKER_CONCURRENCY: '1', CLAIM_IDLE_MS: '800', CLAIM_INTERVAL_MS: '100', CONSUMER_NAME: 'slowpoke',
    });
    await eventually(() => new Set(sink.accepted).size === 12, { what: 'all twelve delivered' });
    await eventually(async () => (await redis.xpending(stream, 'workers'))[0] === 0, { what: 'nothing pending' });
    expect([...sink.accepted].sort()).toEqual([...keys].sort());
    expect(await worker.stop()).toBe(0);
  } finally {
    await sink.close();
  }
});

it('entries a dead worker left behind are delivered in batches, not one at a time, each once', async () => {
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const k = accountKeys(prefix, ACCOUNT);
  const keys = await appendEmails(redis, prefix, ACCOUNT, 400, 2000);
  // A worker that read everything and died before delivering any of it.
  await redis.xgroup('CREATE', k.stream, 'workers', '0', 'MKSTREAM');
  await redis.xreadgroup('GROUP', 'workers', 'dead', 'COUNT', 400, 'STREAMS', k.stream, '>');
  const port = await freePort();
  const worker = startDaemon(['worker'], {
    REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: prefix, IMAP_USER: ACCOUNT, SINK_URL: receiver.url, HTTP_PORT: String(port),
    READ_BLOCK_MS: '200', READ_BATCH_SIZE: '50', CLAIM_IDLE_MS: '300', CLAIM_INTERVAL_MS: '200', CONSUMER_NAME: 'heir',
  });
  await eventually(() => keys.every((key) => receiver.accepted.includes(key)), { what: 'the dead worker\'s entries delivered' });
  await eventually(async () => (await redis.xpending(k.stream, 'workers'))[0] === 0, { what: 'nothing pending' });
  expect(receiver.accepted.filter((key) => keys.includes(key))).toHaveLength(400);
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const calls = Number(/^mailstream_delivery_batch_size_count\{sink="webhook"\} (\d+)/m.exec(metrics)?.[1]);
  // 400 entries claimed 50 at a time: about 8 sink calls; one at a time would be 400.
  expect(calls).toBeLessThanOrEqual(40);
  expect(await redis.hlen(k.group('workers').handouts)).toBe(0);
  expect(await worker.stop()).toBe(0);
});
