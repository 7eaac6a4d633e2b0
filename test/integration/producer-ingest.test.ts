// The producer end to end through its CLI: TLS + XOAUTH2 against the private Dovecot, two
// mailboxes at once, 1,000 mixed messages exactly once and in UID order, malformed mail kept with
// parseError, new mail through IDLE and through polling.
import { createHash } from 'node:crypto';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { startDovecot, type Dovecot } from '../helpers/dovecot.ts';
import { startOAuthServer, type OAuthServer } from '../helpers/oauth-server.ts';
import { startTestRedis, type TestRedis } from '../helpers/test-redis.ts';
import { generateCorpus } from '../helpers/corpus.ts';
import { runCli, startDaemon, type Daemon } from '../helpers/cli.ts';
import { eventually } from '../helpers/ports.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { producerEnv } from '../helpers/producer-env.ts';
import { metricValue, readEntries } from '../helpers/stream-read.ts';
import { accountKeys } from '../../src/core/keys.ts';
import type { EmailEntry } from '../../src/core/entry.ts';

const USER = 'user@example.com';
let oauth: OAuthServer;
let dovecot: Dovecot;
let redisServer: TestRedis;
let redis: Redis;

beforeAll(async () => {
  oauth = await startOAuthServer();
  [dovecot, redisServer] = await Promise.all([startDovecot({ introspectionUrl: oauth.introspectUrl }), startTestRedis()]);
  redis = redisServer.client();
});

afterAll(async () => {
  redis?.disconnect();
  await dovecot?.destroy();
  await redisServer?.destroy();
  await oauth?.close();
  expect(await killAllTracked()).toBe(0);
});

async function httpUrl(daemon: Daemon): Promise<string> {
  const line = await daemon.waitForLog((l) => l.msg === 'health and metrics listening', 'HTTP listener');
  return line.url as string;
}

describe('producer', () => {
  it('appends 1,000 mixed messages from two mailboxes over TLS with XOAUTH2, exactly once and in UID order', async () => {
    const inbox = generateCorpus(600, { seed: 11, tag: 'inbox' });
    const archive = generateCorpus(400, { seed: 12, tag: 'archive' });
    dovecot.seed(USER, 'INBOX', inbox.map((m) => m.raw));
    dovecot.seed(USER, 'Archive', archive.map((m) => m.raw));
    const env = producerEnv({ redisUrl: redisServer.url, dovecot, oauth, mailboxes: ['INBOX', 'Archive'], extra: { START_FROM: 'all', FETCH_BATCH_SIZE: '150' } });
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);
    const introspectionsBefore = oauth.counters.introspections;
    const daemon = startDaemon(['producer'], env);
    const url = await httpUrl(daemon);
    await eventually(async () => (await redis.xlen(keys.stream)) >= 1000, { what: '1,000 entries' });
    await eventually(async () => (await fetch(`${url}/ready`)).status === 200, { what: 'ready' });

    const all = await readEntries(redis, keys.stream);
    expect(all).toHaveLength(1000);
    expect(new Set(all.map((e) => e.key)).size).toBe(1000);
    for (const [mailbox, corpus] of [['INBOX', inbox], ['Archive', archive]] as const) {
      const mine = all.filter((e) => e.mailbox === mailbox);
      expect(mine.map((e) => e.uid)).toEqual(mine.map((_, i) => i + 1));
      // Message-ID when there is one, else the content hash; never two entries for one message.
      mine.forEach((e, i) => {
        const mail = corpus[i]!;
        expect(e.messageId).toBe(mail.messageId);
        expect(e.keySource).toBe(mail.messageId ? 'message-id' : 'content-hash');
      });
      const malformed = mine.filter((_, i) => corpus[i]!.kind === 'malformed');
      expect(malformed.length).toBeGreaterThan(0);
      for (const e of malformed) expect(e.parseError).toMatch(/malformed|mailparser/);
      const wellFormed = mine.filter((_, i) => corpus[i]!.kind !== 'malformed');
      for (const e of wellFormed) expect(e.parseError).toBeUndefined();
      const withAttachments = mine.filter((_, i) => corpus[i]!.kind === 'attachment');
      for (const e of withAttachments) {
        expect(e.attachments.length).toBeGreaterThan(0);
        for (const a of e.attachments) expect(a.sha256).toMatch(/^[0-9a-f]{64}$/);
      }
    }
    // The logins were XOAUTH2 checked by the token server (OAUTHBEARER is not offered).
    expect(oauth.counters.introspections).toBeGreaterThan(introspectionsBefore);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metricValue(metrics, 'mailstream_emails_appended_total', 'mailbox="INBOX"')).toBe(600);
    expect(metricValue(metrics, 'mailstream_emails_appended_total', 'mailbox="Archive"')).toBe(400);
    expect(metricValue(metrics, 'mailstream_parse_errors_total', 'mailbox="INBOX"')).toBe(inbox.filter((m) => m.kind === 'malformed').length);
    const state = await redis.hgetall(keys.mailbox('INBOX'));
    expect(Number(state.lastUid)).toBe(600);
    expect(Number(state.lastPollAt)).toBeGreaterThan(0);
    const status = JSON.parse((await redis.hget(keys.mailboxStatus, 'Archive'))!) as { lastUid: number; connected: boolean };
    expect(status).toMatchObject({ lastUid: 400, connected: true });
    expect(await redis.sismember(`${env.MAILSTREAM_PREFIX}:accounts`, USER)).toBe(1);

    // A message delivered now arrives through IDLE: the producer logs the wake-up by new mail.
    const fresh = generateCorpus(1, { seed: 13, tag: 'idle' });
    await dovecot.append(USER, 'INBOX', fresh.map((m) => m.raw));
    await eventually(async () => (await redis.xlen(keys.stream)) === 1001, { what: 'the IDLE delivery' });
    const last = (await readEntries(redis, keys.stream)).at(-1)!;
    expect(last).toMatchObject({ messageId: fresh[0]!.messageId, mailbox: 'INBOX', uid: 601 });
    expect(daemon.logs().some((l) => l.msg === 'new mail' && l.mailbox === 'INBOX' && l.via === 'idle')).toBe(true);

    expect(await daemon.stop()).toBe(0);
    expect(daemon.logs().some((l) => l.msg === 'stopped')).toBe(true);
  });

  it('without IDLE, polling finds new mail', async () => {
    dovecot.seed(USER, 'Polled', generateCorpus(3, { seed: 21, tag: 'polled' }).map((m) => m.raw));
    const env = producerEnv({ redisUrl: redisServer.url, dovecot, oauth, mailboxes: ['Polled'], extra: { START_FROM: 'now', IMAP_IDLE: 'false', POLL_INTERVAL_MS: '300' } });
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);
    const daemon = startDaemon(['producer'], env);
    await daemon.waitForLog((l) => l.msg === 'mailbox seen for the first time', 'first sight');
    // Mail appended during the first sync would be read by that sync, not by a poll.
    await daemon.waitForLog((l) => l.msg === 'mailbox in sync: waiting for new mail' && l.waitingBy === 'poll', 'the first sync');
    const fresh = generateCorpus(2, { seed: 22, tag: 'poll-new' });
    await dovecot.append(USER, 'Polled', fresh.map((m) => m.raw));
    await eventually(async () => (await redis.xlen(keys.stream)) === 2, { what: 'polled mail' });
    // START_FROM=now: the three older messages are not read.
    expect((await readEntries(redis, keys.stream)).map((e) => e.uid)).toEqual([4, 5]);
    expect(daemon.logs().some((l) => l.msg === 'new mail' && l.via === 'poll')).toBe(true);
    expect(daemon.logs().some((l) => l.via === 'idle')).toBe(false);
    expect(await daemon.stop()).toBe(0);
  });

  it('--dry-run prints the entries it would append and writes nothing to Redis', async () => {
    const corpus = generateCorpus(5, { seed: 23, tag: 'dry' });
    dovecot.seed(USER, 'Dry', corpus.map((m) => m.raw));
    const env = producerEnv({ redisUrl: redisServer.url, dovecot, oauth, mailboxes: ['Dry'], extra: { START_FROM: 'all' } });
    const before = await redis.dbsize();
    const result = await runCli(['producer', '--dry-run'], env);
    expect(result.code).toBe(0);
    const lines = result.stdout.trim().split('\n').map((l) => JSON.parse(l) as { key: string; email: EmailEntry });
    expect(lines.map((l) => l.email.uid)).toEqual([1, 2, 3, 4, 5]);
    expect(lines.map((l) => l.key)).toEqual(lines.map((l) => l.email.key));
    expect(lines.map((l) => l.email.messageId)).toEqual(corpus.map((m) => m.messageId));
    expect(result.stderr).toMatch(/dry run: nothing written/);
    expect(await redis.dbsize()).toBe(before);
    expect(await redis.keys(`${env.MAILSTREAM_PREFIX}*`)).toEqual([]);
  });

  it('streams a huge message to the parser: attachment metadata and sha256 in the entry, content kept out', async () => {
    const huge = generateCorpus(1, { seed: 24, tag: 'huge', hugeBytes: 6 * 1024 * 1024, mix: { huge: 1, plain: 0, alternative: 0, attachment: 0, charset: 0, malformed: 0, 'no-message-id': 0 } });
    const around = generateCorpus(4, { seed: 25, tag: 'around-huge' });
    const mails = [around[0]!, around[1]!, huge[0]!, around[2]!, around[3]!];
    dovecot.seed(USER, 'Huge', mails.map((m) => m.raw));
    const env = producerEnv({ redisUrl: redisServer.url, dovecot, oauth, mailboxes: ['Huge'], extra: { START_FROM: 'all' } });
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);
    const daemon = startDaemon(['producer'], env);
    await eventually(async () => (await redis.xlen(keys.stream)) === 5, { what: 'five entries' });
    const entries = await readEntries(redis, keys.stream);
    expect(entries.map((e) => e.messageId)).toEqual(mails.map((m) => m.messageId));
    const big = entries[2]!;
    const expected = (await simpleParser(huge[0]!.raw)).attachments.map((a) => ({ size: a.content.length, sha256: createHash('sha256').update(a.content).digest('hex') }));
    expect(big.attachments.map((a) => ({ size: a.size, sha256: a.sha256 }))).toEqual(expected);
    expect(big.parseError).toBeUndefined();
    const [, fields] = (await redis.xrange(keys.stream, '-', '+'))[2]!;
    expect(fields[3]!.length).toBeLessThan(64 * 1024);
    expect(await daemon.stop()).toBe(0);
  });
});
