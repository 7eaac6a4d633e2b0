// The module sink through a real `mailstream worker`: a user's ESM handler, importing
// `mailstream/sink` as users do (node_modules/mailstream is a symlink to this repository, as
// `npm install /path/to/mailstream` makes it), gets the parsed email and a context; throwing
// retries, throwing PermanentDeliveryError dead-letters at once; handleBatch answers a batch;
// init and close bracket the worker's life; a module with wrong exports stops start-up.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { accountKeys } from '../../src/core/keys.ts';
import { ROOT, runCli, startDaemon } from '../helpers/cli.ts';
import { appendEmails } from '../helpers/entries.ts';
import { eventually, freePort } from '../helpers/ports.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.ts';

const ACCOUNT = 'user@example.com';
let redisServer: RedisServer;
let redis: Redis;
let dir: string;

beforeAll(async () => {
  redisServer = await startRedisServer();
  redis = redisServer.client();
  dir = mkdtempSync(join(tmpdir(), 'ms-module-'));
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(ROOT, join(dir, 'node_modules', 'mailstream'), 'dir');
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
import { PermanentDeliveryError } from 'mailstream/sink';
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

it('refuses to start with a module whose exports are wrong (exit 78, names SINK_URL and what is missing)', async () => {
  const cases: Array<[string, string]> = [
    ['export const nothing = 1;\n', 'exports neither handle(email, ctx) nor handleBatch(emails, ctx) (its exports: nothing)'],
    ['export function handle() {}\nexport const init = true;\n', '`init` is exported but is boolean, not a function'],
    ['export function handleBatch() { return []; }\nexport const close = "later";\n', '`close` is exported but is string, not a function'],
  ];
  for (const [i, [source, problem]] of cases.entries()) {
    const bad = join(dir, `bad-${i}.mjs`);
    writeFileSync(bad, source);
    const result = await runCli(['worker'], { REDIS_URL: redisServer.url, IMAP_USER: ACCOUNT, SINK_URL: `module://${bad}`, HTTP_PORT: '0' });
    expect(result.code, result.stderr).toBe(78);
    expect(result.stderr).toContain('SINK_URL');
    expect(result.stderr).toContain(problem);
  }
});

it('a failing init() stops start-up with exit 1 (a restart may fix it) and its message', async () => {
  const handler = join(dir, 'init-fails.mjs');
  writeFileSync(handler, 'export function init() { throw new Error(\'CRM unreachable\'); }\nexport function handle() {}\n');
  const result = await runCli(['worker'], { REDIS_URL: redisServer.url, IMAP_USER: ACCOUNT, SINK_URL: `module://${handler}`, HTTP_PORT: '0' });
  expect(result.code).toBe(1);
  expect(result.stderr).toContain('SINK_URL: init() of module');
  expect(result.stderr).toContain('CRM unreachable');
});

it('handleBatch answers each batch with one outcome per email; init runs before the first batch, close at shutdown', async () => {
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const log = join(dir, 'batch-handled.log');
  const lifecycle = join(dir, 'lifecycle.log');
  const handler = join(dir, 'batch-handler.mjs');
  writeFileSync(handler, `
import { appendFileSync } from 'node:fs';
let stopped;
export async function init(ctx) { stopped = ctx.signal; appendFileSync(${JSON.stringify(lifecycle)}, 'init\\n'); }
export async function handleBatch(emails, ctx) {
  appendFileSync(${JSON.stringify(lifecycle)}, 'batch\\n');
  return emails.map((email, i) => {
    const { idempotencyKey, attempt } = ctx.deliveries[i];
    if (email.uid === 2) return { status: 'permanent', reason: 'no such customer' };
    if (email.uid === 3 && attempt === 1) return { status: 'retry', reason: 'customer record locked' };
    appendFileSync(${JSON.stringify(log)}, JSON.stringify({ key: idempotencyKey, attempt, account: ctx.account }) + '\\n');
    return { status: 'delivered' };
  });
}
export async function close() { appendFileSync(${JSON.stringify(lifecycle)}, 'close ' + stopped.aborted + '\\n'); }
`);
  await appendEmails(redis, prefix, ACCOUNT, 10);
  const env = { REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: prefix, IMAP_USER: ACCOUNT };
  const worker = startDaemon(['worker'], { ...env, SINK_URL: `module://${handler}`, HTTP_PORT: String(await freePort()), RETRY_BASE_MS: '100', READ_BLOCK_MS: '200' });
  const handled = () => { try { return readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { key: string; attempt: number; account: string }); } catch { return []; } };
  await eventually(() => handled().length === 9, { what: '9 handled' });
  expect(handled().find((h) => h.key === '<msg-3@example.com>')).toEqual({ key: '<msg-3@example.com>', attempt: 2, account: ACCOUNT });
  await eventually(async () => (await redis.xlen(accountKeys(prefix, ACCOUNT).dlq)) === 1, { what: 'one dead letter' });
  const letters = JSON.parse((await runCli(['dlq', 'list', '--json'], env)).stdout) as Array<{ key: string; reason: string; error: string }>;
  expect(letters).toEqual([expect.objectContaining({ key: '<msg-2@example.com>', reason: 'permanent', error: expect.stringContaining('no such customer') })]);
  expect(await worker.stop()).toBe(0);
  const events = readFileSync(lifecycle, 'utf8').split('\n').filter(Boolean);
  expect(events[0]).toBe('init');
  expect(events.filter((e) => e === 'init')).toHaveLength(1);
  expect(events.at(-1)).toBe('close true');
  expect(events.filter((e) => e.startsWith('close'))).toHaveLength(1);
  expect(existsSync(log)).toBe(true);
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
