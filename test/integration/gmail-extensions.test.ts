// The producer against a server that speaks Gmail's IMAP extensions (X-GM-EXT-1): the idempotency
// key comes from X-GM-MSGID, the entry carries Gmail's thread id and labels, and a message seen in
// both INBOX and [Gmail]/All Mail (Gmail shows every labelled message in both) is appended once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { startTestRedis, type TestRedis } from '../helpers/test-redis.ts';
import { generateCorpus } from '../helpers/corpus.ts';
import { startDaemon } from '../helpers/cli.ts';
import { eventually } from '../helpers/ports.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { uniquePrefix } from '../helpers/producer-env.ts';
import { metricValue, readEntries } from '../helpers/stream-read.ts';
import { ALL_MAIL, gmailProducerEnv, startGmailImap, type GmailImap } from '../helpers/gmail-imap.ts';
import { accountKeys } from '../../src/core/keys.ts';

let gmail: GmailImap;
let redisServer: TestRedis;
let redis: Redis;

beforeAll(async () => {
  [gmail, redisServer] = await Promise.all([startGmailImap(), startTestRedis()]);
  redis = redisServer.client();
});

afterAll(async () => {
  redis?.disconnect();
  await gmail?.close();
  await redisServer?.destroy();
  expect(await killAllTracked()).toBe(0);
});

/** Gmail's ids are 64-bit decimals, beyond a JavaScript number's exact range. */
const MSG = (n: number) => `18${String(n).padStart(17, '0')}`;
const THREAD = '1790000000000000001';

describe('the producer with Gmail\'s extensions', () => {
  it('keys entries by X-GM-MSGID, carries thread id and labels, and appends a message in INBOX and All Mail once', async () => {
    const mails = [
      ...generateCorpus(3, { seed: 91, tag: 'gmail', mix: { plain: 1, alternative: 1, attachment: 1, huge: 0, malformed: 0, 'no-message-id': 0 } }),
      ...generateCorpus(1, { seed: 93, tag: 'gmail-archived', mix: { 'no-message-id': 1, plain: 0, alternative: 0, attachment: 0, huge: 0, malformed: 0, charset: 0 } }),
    ];
    // Three in the inbox, threaded and labelled; Gmail lists them in All Mail too. The fourth is archived.
    for (const [i, mail] of mails.slice(0, 3).entries()) {
      const copy = { raw: mail.raw, msgId: MSG(i + 1), threadId: THREAD, labels: ['\\Inbox', 'Clients', '\\Important'] };
      gmail.add('INBOX', copy);
      gmail.add(ALL_MAIL, copy);
    }
    gmail.add(ALL_MAIL, { raw: mails[3]!.raw, msgId: MSG(4), threadId: MSG(4), labels: ['Receipts'] });

    const env = gmailProducerEnv(gmail, { redisUrl: redisServer.url, prefix: uniquePrefix('gmail'), mailboxes: ['INBOX', ALL_MAIL] });
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, gmail.user);
    const daemon = startDaemon(['producer'], env);
    const url = (await daemon.waitForLog((l) => l.msg === 'health and metrics listening')).url as string;
    const metrics = async () => (await fetch(`${url}/metrics`)).text();
    await eventually(async () => metricValue(await metrics(), 'mailstream_emails_fetched_total') === 7, { what: 'both mailboxes read' });
    // Fetched is counted before the parse and the append: wait for the appends themselves.
    await eventually(async () => metricValue(await metrics(), 'mailstream_emails_appended_total') + metricValue(await metrics(), 'mailstream_emails_skipped_duplicate_total') === 7, { what: 'both mailboxes appended' });
    await eventually(async () => (await fetch(`${url}/ready`)).status === 200, { what: 'ready' });

    const entries = await readEntries(redis, keys.stream);
    expect(entries.map((e) => e.key).sort()).toEqual([1, 2, 3, 4].map((n) => `gmail:${MSG(n)}`));
    expect(new Set(entries.map((e) => e.keySource))).toEqual(new Set(['gmail-msgid']));
    expect(metricValue(await metrics(), 'mailstream_emails_skipped_duplicate_total')).toBe(3);
    const byKey = new Map(entries.map((e) => [e.key, e]));
    expect(byKey.get(`gmail:${MSG(1)}`)!.gmail).toEqual({ msgId: MSG(1), threadId: THREAD, labels: ['\\Inbox', 'Clients', '\\Important'] });
    const archived = byKey.get(`gmail:${MSG(4)}`)!;
    expect(archived).toMatchObject({ mailbox: ALL_MAIL, gmail: { msgId: MSG(4), threadId: MSG(4), labels: ['Receipts'] } });
    // A mail without a Message-ID still has a stable key: Gmail's id, not a content hash.
    expect(archived.messageId).toBeNull();

    // New mail lands in both mailboxes at once, as Gmail shows it; IDLE wakes both runners.
    const fresh = generateCorpus(1, { seed: 92, tag: 'gmail-new', mix: { plain: 1 } })[0]!;
    const copy = { raw: fresh.raw, msgId: MSG(5), threadId: THREAD, labels: ['\\Inbox', 'Clients'] };
    gmail.add('INBOX', copy);
    gmail.add(ALL_MAIL, copy);
    await eventually(async () => metricValue(await metrics(), 'mailstream_emails_fetched_total') === 9, { what: 'the new mail in both mailboxes' });
    await eventually(async () => metricValue(await metrics(), 'mailstream_emails_skipped_duplicate_total') === 4, { what: 'the second copy skipped' });
    const after = await readEntries(redis, keys.stream);
    expect(after).toHaveLength(5);
    expect(after.filter((e) => e.key === `gmail:${MSG(5)}`)).toHaveLength(1);
    expect(await daemon.stop()).toBe(0);
  });
});
