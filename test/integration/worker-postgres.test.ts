// Two worker processes share one consumer group and write 5,000 emails to PostgreSQL: every key
// lands exactly once, in a table a versioned migration created, with its queryable columns. An
// email PostgreSQL refuses for its data is dead-lettered alone; the rest of its batch lands.
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { accountKeys } from '../../src/core/keys.ts';
import { migrations as migrationFiles } from '../../src/worker/sinks/postgres-migrate.ts';
import { runCli, startDaemon } from '../helpers/cli.ts';
import { appendEmails, sampleEmail } from '../helpers/entries.ts';
import { eventually, freePort } from '../helpers/ports.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.ts';

const ACCOUNT = 'user@example.com';
const COUNT = 5_000;
let redisServer: RedisServer;
let redis: Redis;
let db: TestDatabase;

beforeAll(async () => {
  [redisServer, db] = await Promise.all([startRedisServer(), createTestDatabase()]);
  redis = redisServer.client();
});

afterAll(async () => {
  redis?.disconnect();
  await redisServer?.destroy();
  await db?.drop();
  expect(await killAllTracked()).toBe(0);
});

it('two workers deliver 5,000 entries to PostgreSQL, every key exactly once', async () => {
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const keys = await appendEmails(redis, prefix, ACCOUNT, COUNT);
  const env = { REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: prefix, IMAP_USER: ACCOUNT, SINK_URL: db.url, READ_BLOCK_MS: '200' };
  const workers = [
    startDaemon(['worker'], { ...env, HTTP_PORT: String(await freePort()) }),
    startDaemon(['worker'], { ...env, HTTP_PORT: String(await freePort()) }),
  ];
  await eventually(async () => Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM emails')).rows[0]!.n) >= COUNT, { what: `${COUNT} rows` });
  const stream = accountKeys(prefix, ACCOUNT).stream;
  await eventually(async () => (await redis.xpending(stream, 'workers'))[0] === 0, { what: 'nothing pending' });

  const rows = await db.query<{ idempotency_key: string }>('SELECT idempotency_key FROM emails');
  expect(rows.rows).toHaveLength(COUNT);
  expect(new Set(rows.rows.map((r) => r.idempotency_key))).toEqual(new Set(keys));

  // Both processes took part, as members of one group.
  const consumers = (await redis.xinfo('CONSUMERS', stream, 'workers')) as unknown[];
  expect(consumers).toHaveLength(2);
  for (const w of workers) expect(w.logs().some((l) => l.msg === 'worker consuming')).toBe(true);

  const sample = await db.query('SELECT account, mailbox, message_id, from_address, to_addresses, subject, sent_at, size_bytes, attachment_count, email FROM emails WHERE idempotency_key = $1', [keys[5]]);
  expect(sample.rows[0]).toMatchObject({
    account: ACCOUNT, mailbox: 'INBOX', message_id: keys[5], from_address: 'sender5@example.org',
    to_addresses: [ACCOUNT, 'other@example.net'], subject: 'Message 5', attachment_count: 1,
  });
  expect(sample.rows[0]!.sent_at).toBeInstanceOf(Date);
  expect((sample.rows[0]!.email as { key: string }).key).toBe(keys[5]);
  const migrations = await db.query('SELECT version, name FROM mailstream_migrations ORDER BY version');
  // Every migration file, once each, in order.
  expect(migrations.rows).toEqual(migrationFiles().map(({ version, name }) => ({ version, name })));
  expect(migrations.rows.slice(0, 2)).toEqual([{ version: 1, name: '001_emails.sql' }, { version: 2, name: '002_blob_refs.sql' }]);
  const attachments = await db.query('SELECT attachment_index, filename, size_bytes, ref FROM email_attachments WHERE idempotency_key = $1', [keys[5]]);
  expect(attachments.rows).toEqual([{ attachment_index: 0, filename: 'a.txt', size_bytes: '3', ref: null }]);

  expect(await Promise.all(workers.map((w) => w.stop()))).toEqual([0, 0]);
});

it('an email PostgreSQL refuses for its data goes to the DLQ at once; the rest of its batch lands', async () => {
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const account = 'refused@example.com';
  const stream = accountKeys(prefix, account).stream;
  // Keys of their own (from 10,000): the first test's keys are in the table already.
  const before = await appendEmails(redis, prefix, account, 10, 10_000);
  const bad = { ...sampleEmail(account, 10_010), key: '<bad-uid@example.com>', uid: 'not-a-number' };
  await redis.xadd(stream, '*', 'key', bad.key, 'email', JSON.stringify(bad));
  const after = await appendEmails(redis, prefix, account, 10, 10_011);
  const env = { REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: prefix, IMAP_USER: account, SINK_URL: db.url, READ_BLOCK_MS: '200' };
  const worker = startDaemon(['worker'], { ...env, HTTP_PORT: String(await freePort()) });
  await eventually(async () => (await redis.xlen(accountKeys(prefix, account).dlq)) === 1, { what: 'one dead letter' });
  await eventually(async () => (await redis.xpending(stream, 'workers'))[0] === 0, { what: 'nothing pending' });
  const rows = await db.query<{ idempotency_key: string }>('SELECT idempotency_key FROM emails WHERE account = $1', [account]);
  expect(new Set(rows.rows.map((r) => r.idempotency_key))).toEqual(new Set([...before, ...after]));
  const letters = JSON.parse((await runCli(['dlq', 'list', '--json'], env)).stdout) as Array<{ key: string; reason: string; error: string; attempts: number }>;
  expect(letters).toEqual([expect.objectContaining({ key: bad.key, reason: 'permanent', error: expect.stringContaining('22P02') })]);
  expect(await worker.stop()).toBe(0);
});
