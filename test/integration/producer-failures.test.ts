// Outages the producer must ride out: a wrong password, the IMAP server down, Redis down. Each
// gives a clear error and /ready 503 with the reason, retries with backoff, and recovers by itself
// when the dependency returns, with nothing lost and nothing twice.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { startDovecot, type Dovecot } from '../helpers/dovecot.ts';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.ts';
import { generateCorpus } from '../helpers/corpus.ts';
import { runCli, startDaemon } from '../helpers/cli.ts';
import { eventually } from '../helpers/ports.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { producerEnv } from '../helpers/producer-env.ts';
import { metricValue, readEntries } from '../helpers/stream-read.ts';
import { accountKeys } from '../../src/core/keys.ts';

const USER = 'user@example.com';
const OTHER = 'other@example.com';
let dovecot: Dovecot;
let redisServer: RedisServer;
let redis: Redis;

beforeAll(async () => {
  [dovecot, redisServer] = await Promise.all([
    startDovecot({ users: [{ user: USER, password: 'secret-password' }, { user: OTHER, password: 'old-password' }] }),
    startRedisServer({ aof: true }),
  ]);
  redis = redisServer.client();
  redis.on('error', () => undefined); // the Redis outage test kills the server under it
});

afterAll(async () => {
  redis?.disconnect();
  await dovecot?.destroy();
  await redisServer?.destroy();
  expect(await killAllTracked()).toBe(0);
});

async function readiness(url: string): Promise<{ status: number; reasons: string[] }> {
  const res = await fetch(`${url}/ready`);
  return { status: res.status, reasons: ((await res.json()) as { reasons: string[] }).reasons };
}

describe('producer under failures', () => {
  it('wrong password: one clear error, /ready 503, retries, logs in once the password is right', async () => {
    dovecot.seed(OTHER, 'INBOX', generateCorpus(2, { seed: 71, tag: 'pw' }).map((m) => m.raw));
    const env = producerEnv({ redisUrl: redisServer.url, dovecot, user: OTHER, extra: { START_FROM: 'all', IMAP_PASSWORD: 'new-password' } });
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, OTHER);
    const daemon = startDaemon(['producer'], env);
    const url = (await daemon.waitForLog((l) => l.msg === 'health and metrics listening')).url as string;
    const ready = await eventually(async () => { const r = await readiness(url); return r.status === 503 && /authentication failed/.test(r.reasons.join(' ')) ? r : undefined; }, { what: '/ready 503' });
    expect(ready.reasons.join(' ')).toMatch(/IMAP login refused.*IMAP_PASSWORD/);
    await eventually(async () => metricValue(await (await fetch(`${url}/metrics`)).text(), 'mailstream_imap_errors_total', 'mailbox="INBOX",kind="auth"') >= 2, { what: 'retries' });
    const errors = daemon.logs().filter((l) => l.level === 'error');
    expect(errors).toHaveLength(1);
    expect(daemon.output()).not.toContain('new-password');

    // The operator fixes the account (Dovecot re-reads its passwd-file); the next retry succeeds.
    const users = join(dovecot.dir, 'users');
    writeFileSync(users, readFileSync(users, 'utf8').replace(`${OTHER}:{PLAIN}old-password`, `${OTHER}:{PLAIN}new-password`));
    await eventually(async () => (await redis.xlen(keys.stream)) === 2, { what: 'recovery' });
    await eventually(async () => (await readiness(url)).status === 200, { what: '/ready 200' });
    expect(await daemon.stop()).toBe(0);
  });

  it('IMAP server down, then back: reconnects with backoff and picks up mail delivered meanwhile', async () => {
    dovecot.seed(USER, 'Outage', generateCorpus(5, { seed: 72, tag: 'outage' }).map((m) => m.raw));
    const env = producerEnv({ redisUrl: redisServer.url, dovecot, mailboxes: ['Outage'], extra: { START_FROM: 'all' } });
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);
    const daemon = startDaemon(['producer'], env);
    const url = (await daemon.waitForLog((l) => l.msg === 'health and metrics listening')).url as string;
    await eventually(async () => (await redis.xlen(keys.stream)) === 5, { what: 'the first sync' });
    await eventually(async () => (await readiness(url)).status === 200, { what: 'ready' });

    await dovecot.stop();
    const down = await eventually(async () => { const r = await readiness(url); return r.status === 503 ? r : undefined; }, { what: '/ready 503' });
    expect(down.reasons.join(' ')).toMatch(/imap Outage: not logged in/);
    const status = (await (await fetch(`${url}/status`)).json()) as { breakers: Record<string, string>; mailboxes: Array<{ state: string; lastError: string }> };
    expect(Object.keys(status.breakers).sort()).toEqual(['imap', 'redis']);
    expect(status.mailboxes[0]).toMatchObject({ state: 'reconnecting' });
    await eventually(async () => metricValue(await (await fetch(`${url}/metrics`)).text(), 'mailstream_imap_reconnects_total', 'mailbox="Outage"') >= 2, { what: 'reconnect attempts' });
    expect(daemon.logs().some((l) => l.level === 'warn' && l.msg === 'mailbox connection failed: reconnecting with backoff')).toBe(true);

    await dovecot.start();
    const fresh = generateCorpus(2, { seed: 73, tag: 'after-outage' });
    await dovecot.append(USER, 'Outage', fresh.map((m) => m.raw));
    await eventually(async () => (await redis.xlen(keys.stream)) === 7, { what: 'mail after the outage' });
    await eventually(async () => (await readiness(url)).status === 200, { what: '/ready 200' });
    const entries = await readEntries(redis, keys.stream);
    expect(entries.map((e) => e.uid)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(await daemon.stop()).toBe(0);
  });

  it('Redis down, then back: /ready says so, and mail that arrived meanwhile is appended once', async () => {
    dovecot.seed(USER, 'RedisOutage', generateCorpus(4, { seed: 74, tag: 'redis-outage' }).map((m) => m.raw));
    const env = producerEnv({ redisUrl: redisServer.url, dovecot, mailboxes: ['RedisOutage'], extra: { START_FROM: 'all' } });
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);
    const daemon = startDaemon(['producer'], env);
    const url = (await daemon.waitForLog((l) => l.msg === 'health and metrics listening')).url as string;
    await eventually(async () => (await redis.xlen(keys.stream)) === 4, { what: 'the first sync' });

    await redisServer.kill();
    const down = await eventually(async () => { const r = await readiness(url); return r.status === 503 ? r : undefined; }, { what: '/ready 503' });
    expect(down.reasons).toContain('redis: not answering');
    const fresh = generateCorpus(3, { seed: 75, tag: 'during-redis-outage' });
    await dovecot.append(USER, 'RedisOutage', fresh.map((m) => m.raw));
    await redisServer.start();

    await eventually(async () => (await redis.xlen(keys.stream)) === 7, { what: 'mail after Redis returned' });
    await eventually(async () => (await readiness(url)).status === 200, { what: '/ready 200' });
    const entries = await readEntries(redis, keys.stream);
    expect(entries.map((e) => e.uid)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(new Set(entries.map((e) => e.key)).size).toBe(7);
    expect(daemon.logs().some((l) => l.msg === 'redis connection error')).toBe(true);
    expect(await daemon.stop()).toBe(0);
  });

  it('started while Redis is down: serves /ready 503 naming Redis, and ingests once Redis is up', async () => {
    dovecot.seed(USER, 'LateRedis', generateCorpus(3, { seed: 76, tag: 'late-redis' }).map((m) => m.raw));
    const env = producerEnv({ redisUrl: redisServer.url, dovecot, mailboxes: ['LateRedis'], extra: { START_FROM: 'all' } });
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);
    await redisServer.kill();
    const daemon = startDaemon(['producer'], env);
    const url = (await daemon.waitForLog((l) => l.msg === 'health and metrics listening')).url as string;
    expect((await fetch(`${url}/health`)).status).toBe(200);
    const down = await readiness(url);
    expect(down.status).toBe(503);
    expect(down.reasons).toContain('redis: not answering');

    await redisServer.start();
    await eventually(async () => (await redis.xlen(keys.stream)) === 3, { what: 'the mailbox once Redis is up' });
    await eventually(async () => (await readiness(url)).status === 200, { what: '/ready 200' });
    expect((await readEntries(redis, keys.stream)).map((e) => e.uid)).toEqual([1, 2, 3]);
    expect(await redis.sismember(`${env.MAILSTREAM_PREFIX}:accounts`, USER)).toBe(1);
    expect(await daemon.stop()).toBe(0);
  });

  it('never trusts an unknown certificate: without IMAP_TLS_CA_FILE the private server is refused', async () => {
    dovecot.seed(USER, 'Untrusted', generateCorpus(1, { seed: 76, tag: 'untrusted' }).map((m) => m.raw));
    const { IMAP_TLS_CA_FILE: _trusted, ...env } = producerEnv({ redisUrl: redisServer.url, dovecot, mailboxes: ['Untrusted'], extra: { START_FROM: 'all' } });
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);
    const daemon = startDaemon(['producer'], env);
    const url = (await daemon.waitForLog((l) => l.msg === 'health and metrics listening')).url as string;
    const failure = await daemon.waitForLog((l) => l.msg === 'mailbox connection failed: reconnecting with backoff', 'the refusal');
    expect(JSON.stringify(failure.err)).toMatch(/certificate/i);
    expect((await fetch(`${url}/ready`)).status).toBe(503);
    expect(await redis.xlen(keys.stream)).toBe(0);
    expect(await daemon.stop()).toBe(0);
  });

  it('more mailboxes than IMAP_MAX_CONNECTIONS is a configuration error (exit 78) naming the setting', async () => {
    const env = producerEnv({ redisUrl: redisServer.url, dovecot, mailboxes: ['A', 'B', 'C'], extra: { IMAP_MAX_CONNECTIONS: '2' } });
    const result = await runCli(['producer'], env);
    expect(result.code).toBe(78);
    expect(result.stderr).toMatch(/IMAP_MAILBOXES: 3 mailboxes .* IMAP_MAX_CONNECTIONS=2/);
  });
});
