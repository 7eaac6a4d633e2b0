// What one batch costs in Redis round trips, read off MONITOR on a private server: a steady-state
// batch of new entries takes one read, one dedupe check (MGET) and one settle script, and nothing
// else on the data path. Also: two accounts whose streams hold the same entry ids are told apart.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { accountKeys } from '../../src/core/keys.ts';
import { scriptFiles } from '../../src/core/scripts.ts';
import { startDaemon } from '../helpers/cli.ts';
import { appendEmails, sampleEmail } from '../helpers/entries.ts';
import { eventually, freePort } from '../helpers/ports.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.ts';
import { startWebhookReceiver } from '../helpers/webhook-receiver.ts';

const ACCOUNT = 'user@example.com';
let redisServer: RedisServer;
let redis: Redis;
let dir: string;

beforeAll(async () => {
  redisServer = await startRedisServer();
  redis = redisServer.client();
  dir = mkdtempSync(join(tmpdir(), 'ms-roundtrips-'));
});

afterAll(async () => {
  redis?.disconnect();
  await redisServer?.destroy();
  rmSync(dir, { recursive: true, force: true });
  expect(await killAllTracked()).toBe(0);
});

function sha1(text: string): string {
  return createHash('sha1').update(text).digest('hex');
}

it('a batch of new entries costs one read, one dedupe check and one settle script', async () => {
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const stream = accountKeys(prefix, ACCOUNT).stream;
  const out = join(dir, 'out.jsonl');
  const keys = await appendEmails(redis, prefix, ACCOUNT, 500);
  const settleSha = sha1(scriptFiles().find((s) => s.name === 'settleBatch')!.lua);
  const commands: string[][] = [];
  const monitor = await redis.monitor();
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    if (!source.startsWith('lua')) commands.push(args.map(String));
  });
  const worker = startDaemon(['worker'], {
    REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: prefix, IMAP_USER: ACCOUNT, SINK_URL: `file://${out}`, HTTP_PORT: String(await freePort()),
    READ_BATCH_SIZE: '50', READ_BLOCK_MS: '200',
  });
  await eventually(() => { try { return readFileSync(out, 'utf8').split('\n').filter(Boolean).length === 500; } catch { return false; } }, { what: '500 delivered' });
  await eventually(async () => (await redis.xpending(stream, 'workers'))[0] === 0, { what: 'nothing pending' });
  expect(await worker.stop()).toBe(0);
  monitor.disconnect();

  const name = (c: string[]) => c[0]!.toLowerCase();
  // The first call of a script goes as EVAL (MONITOR shows its text escaped), later ones as EVALSHA.
  const settles = commands.filter((c) => (name(c) === 'evalsha' && c[1] === settleSha) || (name(c) === 'eval' && String(c[1]).includes('Records everything one delivered batch')));
  const dedupeChecks = commands.filter((c) => name(c) === 'mget');
  // 500 entries in batches of 50.
  expect(settles).toHaveLength(10);
  expect(dedupeChecks).toHaveLength(10);
  // Nothing else records outcomes: no per-email or per-batch acknowledgements, markers or records.
  const writes = commands.filter((c) => ['xack', 'set', 'multi', 'exec', 'hset', 'hmget', 'hdel', 'zrem', 'zadd', 'hincrby', 'zmscore'].includes(name(c)) && !String(c[1]).endsWith(':processes'));
  expect(writes).toEqual([]);
  expect(new Set(readFileSync(out, 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { key: string }).key))).toEqual(new Set(keys));
});

it('two accounts whose streams hold the same entry ids: a slow one is neither claimed nor sent twice when the other finishes', async () => {
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const accounts = ['fast@example.com', 'slow@example.com'];
  // The same ids in both streams: 1-1 ... 6-1.
  for (const account of accounts) {
    for (let n = 1; n <= 6; n++) {
      const email = sampleEmail(account, n, `<${account}-${n}>`);
      await redis.xadd(accountKeys(prefix, account).stream, `${n}-1`, 'key', email.key, 'email', JSON.stringify(email));
    }
  }
  // The slow account's deliveries take three times CLAIM_IDLE_MS.
  const receiver = await startWebhookReceiver((r) => ({ status: 200, delayMs: r.key.startsWith('<slow') ? 1_500 : 0 }));
  try {
    const accountsFile = join(dir, 'accounts.json');
    writeFileSync(accountsFile, JSON.stringify({ accounts: accounts.map((user) => ({ user })) }));
    const worker = startDaemon(['worker'], {
      REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: prefix, ACCOUNTS_FILE: accountsFile, SINK_URL: receiver.url, HTTP_PORT: String(await freePort()),
      READ_BLOCK_MS: '100', CLAIM_IDLE_MS: '500', CLAIM_INTERVAL_MS: '100',
    });
    await eventually(() => new Set(receiver.accepted).size === 12, { what: 'both accounts delivered' });
    for (const account of accounts) {
      await eventually(async () => (await redis.xpending(accountKeys(prefix, account).stream, 'workers'))[0] === 0, { what: `nothing pending for ${account}` });
    }
    expect(receiver.requests.filter((r) => r.key.startsWith('<slow'))).toHaveLength(6);
    expect(receiver.accepted).toHaveLength(12);
    expect(await worker.stop()).toBe(0);
  } finally {
    await receiver.close();
  }
});
