// The module sink: a user's ESM handler gets the parsed email and a context; throwing retries,
// throwing mailstream's PermanentDeliveryError dead-letters at once.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { accountKeys } from '../../src/core/keys.ts';
import { runCli, startDaemon } from '../helpers/cli.ts';
import { appendEmails } from '../helpers/entries.ts';
import { eventually, freePort } from '../helpers/ports.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.ts';

const ACCOUNT = 'user@example.com';
const API = fileURLToPath(new URL('../../src/worker/sinks/module-api.ts', import.meta.url));
let redisServer: RedisServer;
let redis: Redis;
let dir: string;

beforeAll(async () => {
  redisServer = await startRedisServer();
  redis = redisServer.client();
  dir = mkdtempSync(join(tmpdir(), 'ms-module-'));
});

afterAll(async () => {
  redis?.disconnect();
  await redisServer?.destroy();
  rmSync(dir, { recursive: true, force: true });
  expect(await killAllTracked()).toBe(0);
});

it('calls handle(email, ctx); a thrown error is retried, a PermanentDeliveryError dead-letters', async () => {
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const log = join(dir, 'handled.log');
  const handler = join(dir, 'handler.mjs');
  writeFileSync(handler, `
import { appendFileSync } from 'node:fs';
import { PermanentDeliveryError } from ${JSON.stringify(API)};
export async function handle(email, ctx) {
  if (email.uid === 2) throw new PermanentDeliveryError('no route for this sender');
  if (email.uid === 3 && ctx.attempt === 1) throw new Error('database busy');
  appendFileSync(${JSON.stringify(log)}, JSON.stringify({ key: ctx.idempotencyKey, subject: email.envelope.subject, attempt: ctx.attempt, account: ctx.account }) + '\\n');
}
`);
  await appendEmails(redis, prefix, ACCOUNT, 10);
  const env = { REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: prefix, IMAP_USER: ACCOUNT };
  const worker = startDaemon(['worker'], { ...env, SINK_URL: `module://${handler}`, HTTP_PORT: String(await freePort()), RETRY_BASE_MS: '100', READ_BLOCK_MS: '200' });
  const handled = () => { try { return readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { key: string; subject: string; attempt: number; account: string }); } catch { return []; } };
  await eventually(() => handled().length === 9, { what: '9 handled' });
  expect(handled().find((h) => h.key === '<msg-3@example.com>')).toMatchObject({ attempt: 2, subject: 'Message 3', account: ACCOUNT });
  await eventually(async () => (await redis.xlen(accountKeys(prefix, ACCOUNT).dlq)) === 1, { what: 'one dead letter' });
  const letters = JSON.parse((await runCli(['dlq', 'list', '--json'], env)).stdout) as Array<{ key: string; reason: string; error: string }>;
  expect(letters).toEqual([expect.objectContaining({ key: '<msg-2@example.com>', reason: 'permanent', error: expect.stringContaining('no route for this sender') })]);
  expect(await worker.stop()).toBe(0);
});

it('refuses to start with a module that exports no handle function (exit 78, names SINK_URL)', async () => {
  const bad = join(dir, 'bad.mjs');
  writeFileSync(bad, 'export const nothing = 1;\n');
  const result = await runCli(['worker'], { REDIS_URL: redisServer.url, IMAP_USER: ACCOUNT, SINK_URL: `module://${bad}`, HTTP_PORT: '0' });
  expect(result.code).toBe(78);
  expect(result.stderr).toContain('SINK_URL');
});

it('an email the worker dies on: the survivors are delivered, and after MAX_UNFINISHED_DELIVERIES tries it goes to the DLQ', async () => {
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const log = join(dir, 'crash-handled.log');
  const handler = join(dir, 'crash-handler.mjs');
  // A handler bug that takes the whole process down (no error to catch), always on the same email.
  writeFileSync(handler, `
import { appendFileSync } from 'node:fs';
export async function handle(email, ctx) {
  if (ctx.idempotencyKey === '<msg-4@example.com>') process.kill(process.pid, 'SIGKILL');
  appendFileSync(${JSON.stringify(log)}, ctx.idempotencyKey + '\\n');
}
`);
  await appendEmails(redis, prefix, ACCOUNT, 10);
  const env = { REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: prefix, IMAP_USER: ACCOUNT };
  const k = accountKeys(prefix, ACCOUNT);
  // As systemd would: the same consumer name, restarted after each death.
  let port = 0;
  const runWorker = async () => {
    port = await freePort();
    return startDaemon(['worker'], {
      ...env, SINK_URL: `module://${handler}`, HTTP_PORT: String(port), READ_BLOCK_MS: '200', CONSUMER_NAME: 'crashy', MAX_UNFINISHED_DELIVERIES: '2',
    });
  };
  let deaths = 0;
  let worker = await runWorker();
  while ((await redis.xlen(k.dlq)) === 0) {
    const outcome = await Promise.race([worker.tracked.exited, new Promise((r) => setTimeout(() => r('running'), 200))]);
    if (outcome === 'running') continue;
    expect(outcome).toBe('SIGKILL');
    deaths += 1;
    expect(deaths, 'the worker keeps dying on the same email').toBeLessThanOrEqual(3);
    worker = await runWorker();
  }
  // Once in the fresh batch, then twice more tried alone: the third try after a death is refused.
  expect(deaths).toBe(3);
  const handled = () => { try { return new Set(readFileSync(log, 'utf8').split('\n').filter(Boolean)); } catch { return new Set<string>(); } };
  const others = Array.from({ length: 10 }, (_, i) => `<msg-${i}@example.com>`).filter((key) => key !== '<msg-4@example.com>');
  await eventually(() => others.every((key) => handled().has(key)), { what: 'the other nine delivered' });
  await eventually(async () => (await redis.xpending(k.stream, 'workers'))[0] === 0, { what: 'nothing pending' });
  const letters = JSON.parse((await runCli(['dlq', 'list', '--json'], env)).stdout) as Array<{ key: string; reason: string; error: string }>;
  expect(letters).toEqual([expect.objectContaining({ key: '<msg-4@example.com>', reason: 'max-deliveries', error: expect.stringContaining('MAX_UNFINISHED_DELIVERIES=2') })]);
  expect(await redis.hlen(k.group('workers').handouts)).toBe(0);
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  expect(metrics).toMatch(/^mailstream_emails_dead_lettered_total\{reason="max-deliveries"\} 1$/m);
  expect(await worker.stop()).toBe(0);
});
