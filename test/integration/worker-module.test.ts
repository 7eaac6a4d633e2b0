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
