// UIDVALIDITY changes under a running producer (doveadm's, and the harsh renumbering of every
// UID), and an operator's `mailbox reset --since`: nothing lost, nothing appended twice, and the
// change shows in logs and metrics.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { startDovecot, type Dovecot } from '../helpers/dovecot.ts';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.ts';
import { generateCorpus } from '../helpers/corpus.ts';
import { runCli, startDaemon, type Daemon } from '../helpers/cli.ts';
import { eventually } from '../helpers/ports.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { producerEnv } from '../helpers/producer-env.ts';
import { metricValue, readEntries } from '../helpers/stream-read.ts';
import { accountKeys, type AccountKeys } from '../../src/core/keys.ts';

const USER = 'user@example.com';
let dovecot: Dovecot;
let redisServer: RedisServer;
let redis: Redis;
let daemon: Daemon;
let env: Record<string, string>;
let keys: AccountKeys;
let metricsUrl: string;

beforeAll(async () => {
  [dovecot, redisServer] = await Promise.all([startDovecot(), startRedisServer()]);
  redis = redisServer.client();
  dovecot.seed(USER, 'Changed', generateCorpus(30, { seed: 41, tag: 'changed' }).map((m) => m.raw));
  dovecot.seed(USER, 'Renumbered', generateCorpus(30, { seed: 42, tag: 'renumbered' }).map((m) => m.raw));
  env = producerEnv({ redisUrl: redisServer.url, dovecot, mailboxes: ['Changed', 'Renumbered'], extra: { START_FROM: 'all', FETCH_BATCH_SIZE: '10', POLL_INTERVAL_MS: '500' } });
  keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);
  daemon = startDaemon(['producer'], env);
  metricsUrl = `${(await daemon.waitForLog((l) => l.msg === 'health and metrics listening')).url as string}/metrics`;
  await eventually(async () => (await redis.xlen(keys.stream)) === 60, { what: 'the first sync' });
});

afterAll(async () => {
  if (daemon) expect(await daemon.stop()).toBe(0);
  redis?.disconnect();
  await dovecot?.destroy();
  await redisServer?.destroy();
  expect(await killAllTracked()).toBe(0);
});

async function mailboxEntries(mailbox: string) {
  return (await readEntries(redis, keys.stream)).filter((e) => e.mailbox === mailbox);
}

function expectUniqueKeys(entries: Array<{ key: string }>) {
  expect(new Set(entries.map((e) => e.key)).size).toBe(entries.length);
}

describe('UIDVALIDITY changes', () => {
  it('doveadm sets a new UIDVALIDITY: re-synced from the last date, nothing twice, new mail still arrives', async () => {
    const before = await redis.hget(keys.mailbox('Changed'), 'uidValidity');
    const next = await dovecot.changeUidValidity(USER, 'Changed');
    await daemon.waitForLog((l) => l.msg.startsWith('UIDVALIDITY changed') && l.mailbox === 'Changed', 'the change logged');
    await eventually(async () => (await redis.hget(keys.mailbox('Changed'), 'uidValidity')) === String(next), { what: 'the new UIDVALIDITY recorded' });
    expect(before).not.toBe(String(next));
    const fresh = generateCorpus(2, { seed: 43, tag: 'after-change' });
    await dovecot.append(USER, 'Changed', fresh.map((m) => m.raw));
    await eventually(async () => (await mailboxEntries('Changed')).length === 32, { what: 'new mail after the change' });
    const entries = await mailboxEntries('Changed');
    expectUniqueKeys(entries);
    expect(entries.slice(-2).map((e) => [e.messageId, e.uidValidity])).toEqual(fresh.map((m) => [m.messageId, String(next)]));
    const metrics = await (await fetch(metricsUrl)).text();
    expect(metricValue(metrics, 'mailstream_uidvalidity_changes_total', 'mailbox="Changed"')).toBe(1);
    expect(metricValue(metrics, 'mailstream_emails_skipped_duplicate_total', 'mailbox="Changed"')).toBe(30);
  });

  it('every UID renumbered from 1 under a new UIDVALIDITY: no loss, nothing twice', async () => {
    await dovecot.renumber(USER, 'Renumbered');
    await daemon.waitForLog((l) => l.msg.startsWith('UIDVALIDITY changed') && l.mailbox === 'Renumbered', 'the renumbering noticed');
    const fresh = generateCorpus(3, { seed: 44, tag: 'after-renumber' });
    await dovecot.append(USER, 'Renumbered', fresh.map((m) => m.raw));
    await eventually(async () => (await mailboxEntries('Renumbered')).length === 33, { what: 'new mail after renumbering' });
    const entries = await mailboxEntries('Renumbered');
    expectUniqueKeys(entries);
    expect(entries.slice(-3).map((e) => e.uid)).toEqual([31, 32, 33]);
    const metrics = await (await fetch(metricsUrl)).text();
    expect(metricValue(metrics, 'mailstream_uidvalidity_changes_total', 'mailbox="Renumbered"')).toBe(1);
  });
});

describe('mailbox reset', () => {
  it('re-reads from a date: forgotten keys come back once, remembered ones are skipped', async () => {
    const entries = await mailboxEntries('Changed');
    // As if the retention had dropped one key: the reset must bring exactly that one back.
    const forgotten = entries[5]!;
    await redis.zrem(keys.ingested, forgotten.key);
    const result = await runCli(['mailbox', 'reset', 'Changed', '--since', '2000-01-01'], env);
    expect(result.code).toBe(0);
    await daemon.waitForLog((l) => l.msg === 'mailbox reset: re-syncing from a date' && l.mailbox === 'Changed', 'the reset applied');
    await eventually(async () => (await redis.hget(keys.mailbox('Changed'), 'resetSince')) === null, { what: 'the reset answered' });
    await eventually(async () => (await mailboxEntries('Changed')).length === entries.length + 1, { what: 'the forgotten message re-appended' });
    const after = await mailboxEntries('Changed');
    expect(after.at(-1)!.key).toBe(forgotten.key);
    expect(new Set(after.map((e) => e.key)).size).toBe(entries.length);
  });

  it('refuses a bad date and a mailbox never synced', async () => {
    expect((await runCli(['mailbox', 'reset', 'Changed', '--since', 'yesterday'], env)).code).toBe(2);
    const unknown = await runCli(['mailbox', 'reset', 'Nowhere', '--since', '2020-01-01'], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/never been synced/);
  });
});
