// `mailstream status` through the CLI against a private Redis holding a realistic state: streams,
// groups, consumers, DLQ, mailboxes, live and dead processes, an open breaker.
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { globalKeys } from '../../src/core/keys.ts';
import type { StatusReport } from '../../src/ops/status.ts';
import { runCli } from '../helpers/cli.ts';
import { fillState } from '../helpers/ops-state.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.ts';

const PREFIX = 'msst';
let server: RedisServer;
let redis: Redis;
let env: Record<string, string>;

beforeAll(async () => {
  server = await startRedisServer();
  redis = server.client();
  env = { REDIS_URL: server.url, MAILSTREAM_PREFIX: PREFIX };
  await fillState(redis, PREFIX, 'alice@example.com');
  await fillState(redis, PREFIX, 'bob@example.com');
  await redis.hset(globalKeys(PREFIX).processes, 'producer-live', JSON.stringify({
    id: 'producer-live', role: 'producer', pid: 4242, host: 'mail1', startedAt: new Date().toISOString(),
    heartbeatAt: new Date().toISOString(), intervalMs: 60_000, httpUrl: 'http://127.0.0.1:9464',
    breakers: { 'imap:INBOX': 'open', redis: 'closed' },
  }));
  // A worker reports its one sink breaker as `breaker`.
  await redis.hset(globalKeys(PREFIX).processes, 'worker-live', JSON.stringify({
    id: 'worker-live', role: 'worker', pid: 4343, host: 'mail1', startedAt: new Date().toISOString(),
    heartbeatAt: new Date().toISOString(), intervalMs: 60_000, consumer: 'mail1-1', group: 'workers', sink: 'webhook', breaker: 'half-open',
  }));
});

afterAll(async () => {
  redis?.disconnect();
  await server?.destroy();
  expect(await killAllTracked()).toBe(0);
});

describe('mailstream status', () => {
  it('--json reports streams, groups, consumers, DLQ, mailboxes, processes and breakers', async () => {
    const result = await runCli(['status', '--json'], env);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as StatusReport;
    expect(report.accounts.map((a) => a.account)).toEqual(['alice@example.com', 'bob@example.com']);
    const alice = report.accounts[0]!;
    expect(alice.stream).toMatchObject({ length: 29, dlqLength: 1 });
    const workers = alice.stream.groups.find((g) => g.name === 'workers')!;
    expect(workers).toMatchObject({ pending: 8, lag: 18, entriesRead: 12 });
    expect(workers.consumers.map((c) => [c.name, c.pending]).sort()).toEqual([['idle-worker', 0], ['old-worker-1', 2], ['old-worker-2', 6]]);
    expect(alice.stream.groups.find((g) => g.name === 'audit')).toMatchObject({ pending: 0, lag: null, entriesRead: null });
    expect(alice.mailboxes.map((m) => m.mailbox)).toEqual(['Archive', 'INBOX']);
    expect(alice.mailboxes[1]).toMatchObject({ uidValidity: '1700', lastUid: 30, lastInternalDate: '2026-01-01T00:30:00.000Z', status: { state: 'idle' } });
    expect(Date.parse(alice.mailboxes[1]!.lastPollAt!)).toBeGreaterThan(Date.parse('2026-01-01'));
    expect(report.processes.map((p) => [p.id, p.alive])).toEqual([['producer-live', true], ['worker-gone', false], ['worker-live', true]]);
    expect(report.breakers).toEqual([
      { process: 'producer-live', role: 'producer', breaker: 'imap:INBOX', state: 'open' },
      { process: 'producer-live', role: 'producer', breaker: 'redis', state: 'closed' },
      { process: 'worker-live', role: 'worker', breaker: 'sink', state: 'half-open' },
    ]);
  });

  it('with IMAP_USER set, reports that account only; tables for people', async () => {
    const result = await runCli(['status'], { ...env, IMAP_USER: 'bob@example.com' });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('== account bob@example.com');
    expect(result.stdout).not.toContain('alice@example.com');
    expect(result.stdout).toMatch(/workers\s+18\s+8\s+\d+-\d+\s+12\s+3/);
    expect(result.stdout).toMatch(/INBOX\s+1700\s+30\s+/);
    expect(result.stdout).toMatch(/producer-live\s+imap:INBOX\s+OPEN/);
    expect(result.stdout).toMatch(/worker\s+worker-gone\s+h\s+1\s+NO/);
  });

  it('fails with exit 1 and a clear message when Redis does not answer', async () => {
    const result = await runCli(['status'], { REDIS_URL: 'redis://127.0.0.1:1', MAILSTREAM_PREFIX: PREFIX });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('mailstream: Redis at 127.0.0.1:1 does not answer (ECONNREFUSED): is it running, and is REDIS_URL right?\n');
  });
});
