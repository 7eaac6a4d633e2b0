// A worker's cost does not grow with its accounts: one worker process reading 200 account streams
// holds as many Redis connections as one reading a single account (its command connection and
// the one blocking read of the signal stream), and delivers every account's mail exactly once,
// both what was there when it started (the first sweep) and what came after (the signals).
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { accountKeys } from '../../src/core/keys.ts';
import { startDaemon, type Daemon } from '../helpers/cli.ts';
import { appendEmails } from '../helpers/entries.ts';
import { eventually, freePort } from '../helpers/ports.ts';
import { startRedisServer } from '../helpers/redis-server.ts';
import { useWorkerTestbed } from '../helpers/worker-testbed.ts';

const bed = useWorkerTestbed('worker-scale', startRedisServer);

/** The worker's connections, by the names it gives them (every worker here runs alone). */
async function workerConnections(): Promise<string[]> {
  const list = String(await bed.redis.client('LIST'));
  return list.split('\n').map((line) => /(?:^| )name=(\S*)/.exec(line)?.[1] ?? '').filter((name) => name.startsWith('mailstream:worker')).sort();
}

/** Runs one worker over `accounts`, EMAILS_EACH emails each, half before it starts and half after; returns its connections. */
async function runWorker(accounts: string[], emailsEach: number): Promise<string[]> {
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const accountsFile = join(bed.dir, `${prefix}.json`);
  writeFileSync(accountsFile, JSON.stringify({ accounts: accounts.map((user) => ({ user })) }));
  const before = emailsEach / 2;
  const expected: string[] = [];
  // Keys unique over every account and run: receiver.accepted tells deliveries apart by key.
  const base = (i: number) => bed.receiver.accepted.length + 1_000_000 + i * 100;
  const offsets = accounts.map((_, i) => base(i));
  for (const [i, account] of accounts.entries()) expected.push(...await appendEmails(bed.redis, prefix, account, before, offsets[i]));
  const startedWith = bed.receiver.accepted.length;
  const worker: Daemon = startDaemon(['worker'], {
    REDIS_URL: bed.redisServer.url, MAILSTREAM_PREFIX: prefix, ACCOUNTS_FILE: accountsFile, SINK_URL: bed.receiver.url, HTTP_PORT: String(await freePort()),
  });
  await eventually(() => bed.receiver.accepted.length - startedWith >= accounts.length * before, { what: 'the mail there at start delivered' });
  for (const [i, account] of accounts.entries()) expected.push(...await appendEmails(bed.redis, prefix, account, emailsEach - before, offsets[i]! + before));
  await eventually(() => bed.receiver.accepted.length - startedWith >= expected.length, { what: 'the mail appended later delivered' });
  for (const account of accounts) {
    await eventually(async () => (await bed.redis.xpending(accountKeys(prefix, account).stream, 'workers'))[0] === 0, { what: `nothing pending for ${account}` });
  }
  const connections = await workerConnections();
  const delivered = bed.receiver.accepted.slice(startedWith);
  // Exactly once: every key, none twice.
  expect(delivered).toHaveLength(expected.length);
  expect(new Set(delivered)).toEqual(new Set(expected));
  expect(await worker.stop()).toBe(0);
  await eventually(async () => (await workerConnections()).length === 0, { what: 'the worker\'s connections closed' });
  return connections;
}

it('a worker of 200 accounts holds as many Redis connections as one of a single account, and delivers every account\'s mail once', async () => {
  const single = await runWorker(['solo@example.com'], 4);
  const many = await runWorker(Array.from({ length: 200 }, (_, i) => `user${i}@example.com`), 4);
  expect(single.length).toBeLessThanOrEqual(4);
  expect(many).toEqual(single);
  expect(many).toEqual(['mailstream:worker', 'mailstream:worker:signals']);
});
