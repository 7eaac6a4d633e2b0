// TRACK_CHANGES on a server speaking Gmail's X-GM-EXT-1 (hoodiecrow): a label added or removed
// (UID STORE +/-X-GM-LABELS, which moves the message's MODSEQ) is one message.updated carrying the
// labels now; a flag change is not heard with TRACK_CHANGES=labels. The same server without
// CONDSTORE has its flags, labels and UID list compared by a scan every TRACK_CHANGES_SCAN_MS.
import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { ImapFlow } from 'imapflow';
import { startTestRedis, type TestRedis } from '../helpers/test-redis.ts';
import { generateCorpus } from '../helpers/corpus.ts';
import { startDaemon, type Daemon } from '../helpers/cli.ts';
import { eventually } from '../helpers/ports.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { uniquePrefix } from '../helpers/producer-env.ts';
import { ALL_MAIL, gmailProducerEnv, startGmailImap, type GmailImap } from '../helpers/gmail-imap.ts';
import { accountKeys } from '../../src/core/keys.ts';
import type { ChangeEvent } from '../../src/core/entry.ts';

let redisServer: TestRedis;
let redis: Redis;
let gmail: GmailImap | undefined;
let producer: Daemon | undefined;

beforeAll(async () => {
  redisServer = await startTestRedis();
  redis = redisServer.client();
});

afterEach(async () => {
  if (producer) expect(await producer.stop()).toBe(0);
  producer = undefined;
  await gmail?.close();
  gmail = undefined;
});

afterAll(async () => {
  redis?.disconnect();
  await redisServer?.destroy();
  expect(await killAllTracked()).toBe(0);
});

const MSG = (n: number) => `17${String(n).padStart(17, '0')}`;

async function changes(stream: string): Promise<Array<{ type: string; event: ChangeEvent }>> {
  return (await redis.xrange(stream, '-', '+')).filter(([, f]) => f[5] !== 'message.new').map(([, f]) => ({ type: f[5]!, event: JSON.parse(f[3]!) as ChangeEvent }));
}

/** Three labelled messages in All Mail, a producer reading them, and a second client to change them. */
async function setUp(options: { condstore: boolean; trackChanges: string }) {
  gmail = await startGmailImap({ condstore: options.condstore });
  const mails = generateCorpus(3, { seed: 141, tag: 'labels', mix: { plain: 1 } });
  mails.forEach((mail, i) => gmail!.add(ALL_MAIL, { raw: mail.raw, msgId: MSG(i + 1), labels: ['\\Inbox', 'Clients'] }));
  const env = gmailProducerEnv(gmail, {
    redisUrl: redisServer.url, prefix: uniquePrefix('gmchg'), mailboxes: [ALL_MAIL],
    extra: { TRACK_CHANGES: options.trackChanges, POLL_INTERVAL_MS: '200', TRACK_CHANGES_SCAN_MS: '1000' },
  });
  const keys = accountKeys(env.MAILSTREAM_PREFIX!, gmail.user);
  producer = startDaemon(['producer'], env);
  await eventually(async () => Number(await redis.hget(keys.mailbox(ALL_MAIL), 'lastUid')) === 3, { what: 'All Mail read' });
  const client = new ImapFlow({ host: gmail.host, port: gmail.port, secure: false, auth: { user: gmail.user, pass: gmail.password }, logger: false });
  client.on('error', () => undefined);
  await client.connect();
  await client.mailboxOpen(ALL_MAIL);
  return { keys, client };
}

describe('TRACK_CHANGES with Gmail\'s labels', () => {
  it('a label added or removed is one message.updated (CONDSTORE), a flag change is not heard with labels alone', async () => {
    const { keys, client } = await setUp({ condstore: true, trackChanges: 'labels' });
    await client.messageFlagsAdd('1', ['Receipts'], { uid: true, useLabels: true });
    await client.messageFlagsRemove('2', ['Clients'], { uid: true, useLabels: true });
    await client.messageFlagsAdd('3', ['\\Seen'], { uid: true });
    await eventually(async () => (await changes(keys.stream)).length >= 2, { what: 'two label changes' });
    // Another look or two finds nothing more.
    const polled = Number(await redis.hget(keys.mailbox(ALL_MAIL), 'lastPollAt'));
    await eventually(async () => Number(await redis.hget(keys.mailbox(ALL_MAIL), 'lastPollAt')) > polled, { what: 'another look' });
    await client.logout();
    const found = await changes(keys.stream);
    expect(found.map((c) => c.type)).toEqual(['message.updated', 'message.updated']);
    const [added, removed] = found.map((c) => c.event as Extract<ChangeEvent, { type: 'message.updated' }>);
    expect(added).toMatchObject({ messageKey: `gmail:${MSG(1)}`, mailbox: ALL_MAIL, uid: 1, gmail: { labels: ['Clients', 'Receipts', '\\Inbox'] } });
    expect(removed).toMatchObject({ messageKey: `gmail:${MSG(2)}`, uid: 2, gmail: { labels: ['\\Inbox'] } });
    expect(added!.modseq).toMatch(/^\d+$/);
    expect(added!.key).toBe(`gmail:${MSG(1)}#updated#${ALL_MAIL}:${added!.uidValidity}:1:m${added!.modseq}`);
  });

  it('without CONDSTORE, a scan finds flags, labels and deleted UIDs', async () => {
    const { keys, client } = await setUp({ condstore: false, trackChanges: 'flags,labels,deletes' });
    await client.messageFlagsAdd('1', ['\\Flagged'], { uid: true });
    await client.messageFlagsAdd('2', ['Receipts'], { uid: true, useLabels: true });
    expect(await client.messageDelete('3', { uid: true })).toBe(true);
    await eventually(async () => (await changes(keys.stream)).length >= 3, { what: 'the scan\'s three changes' });
    await client.logout();
    const found = await changes(keys.stream);
    expect(found.map((c) => [c.type, c.event.uid])).toEqual([['message.updated', 1], ['message.updated', 2], ['message.deleted', 3]]);
    expect(found[0]!.event).toMatchObject({ flags: ['\\Flagged'], modseq: null });
    expect(found[1]!.event).toMatchObject({ gmail: { labels: ['Clients', 'Receipts', '\\Inbox'] } });
    expect(found[0]!.event.key).toMatch(/#updated#\[Gmail\]\/All Mail:\d+:1:s1$/);
    expect(await redis.hexists(keys.uids(ALL_MAIL), '3')).toBe(0);
  });
});
