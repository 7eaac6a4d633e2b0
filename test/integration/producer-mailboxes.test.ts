// Choosing what to read, against Dovecot: IMAP_MAILBOXES=* reads every selectable mailbox but the
// ones the server marks \Trash, \Junk or \Drafts (SPECIAL-USE, under names no guess would catch);
// a pattern reads its matches; FETCH_FILTER limits a first sync to what a SEARCH matches, and mail
// arriving later is read whole.
import { describe, expect, it } from 'vitest';
import { startDaemon } from '../helpers/cli.ts';
import { eventually } from '../helpers/ports.ts';
import { producerEnv } from '../helpers/producer-env.ts';
import { useProducerTestbed } from '../helpers/producer-testbed.ts';
import { readEntries } from '../helpers/stream-read.ts';
import { accountKeys } from '../../src/core/keys.ts';

const USER = 'user@example.com';
const bed = useProducerTestbed({ dovecot: { specialUse: { Papierkorb: '\\Trash', Werbung: '\\Junk', Entwuerfe: '\\Drafts', Gesendet: '\\Sent' } } });

function mail(id: string, from: string): Buffer {
  return Buffer.from([
    `From: ${from}`, `To: ${USER}`, `Subject: ${id}`, `Message-ID: <${id}@example.com>`, 'Date: Mon, 02 Mar 2026 10:00:00 +0000', '', `Body of ${id}`, '',
  ].join('\r\n'));
}

describe('IMAP_MAILBOXES patterns', () => {
  it('* reads every mailbox but trash, junk and drafts; Archive.% only the level below Archive', async () => {
    const boxes: Record<string, number> = { INBOX: 2, Archive: 1, 'Archive.2024': 1, 'Archive.2024.Q1': 1, Gesendet: 1, Papierkorb: 1, Werbung: 1, Entwuerfe: 1 };
    for (const [box, count] of Object.entries(boxes)) {
      bed.dovecot.seed(USER, box, Array.from({ length: count }, (_, i) => mail(`${box}-${i}`, 'someone@example.org')));
    }
    const readAll = producerEnv({ redisUrl: bed.redisServer.url, dovecot: bed.dovecot, mailboxes: ['*'], extra: { START_FROM: 'all' } });
    const level = producerEnv({ redisUrl: bed.redisServer.url, dovecot: bed.dovecot, mailboxes: ['Archive.%'], extra: { START_FROM: 'all' } });
    const all = startDaemon(['producer'], readAll);
    const one = startDaemon(['producer'], level);
    const stream = (env: Record<string, string>) => accountKeys(env.MAILSTREAM_PREFIX!, USER).stream;
    await eventually(async () => (await bed.redis.xlen(stream(readAll))) === 6, { what: 'the six messages * reads' });
    await eventually(async () => (await bed.redis.xlen(stream(level))) === 1, { what: 'the one message below Archive' });
    const read = async (env: Record<string, string>) => [...new Set((await readEntries(bed.redis, stream(env))).map((e) => e.mailbox))].sort();
    expect(await read(readAll)).toEqual(['Archive', 'Archive.2024', 'Archive.2024.Q1', 'Gesendet', 'INBOX']);
    expect(await read(level)).toEqual(['Archive.2024']);
    const logged = all.logs().find((l) => l.msg === 'mailboxes to read');
    expect((logged?.added as string[]).sort()).toEqual(['Archive', 'Archive.2024', 'Archive.2024.Q1', 'Gesendet', 'INBOX']);
    const status = await (await fetch(`${(await all.waitForLog((l) => l.msg === 'health and metrics listening')).url as string}/status`)).json() as { mailboxes: Array<{ mailbox: string }> };
    expect(status.mailboxes.map((m) => m.mailbox).sort()).toEqual(['Archive', 'Archive.2024', 'Archive.2024.Q1', 'Gesendet', 'INBOX']);
    expect(await all.stop()).toBe(0);
    expect(await one.stop()).toBe(0);
  });
});

describe('FETCH_FILTER', () => {
  it('a first sync reads what the SEARCH matches; mail arriving later is read whole', async () => {
    const box = 'Filtered';
    bed.dovecot.seed(USER, box, [1, 2, 3, 4, 5, 6].map((n) => mail(`f${n}`, n % 2 ? 'boss@example.com' : 'newsletter@example.net')));
    const env = producerEnv({ redisUrl: bed.redisServer.url, dovecot: bed.dovecot, mailboxes: [box], extra: { START_FROM: 'all', FETCH_FILTER: 'FROM "boss@example.com" NOT SUBJECT f5' } });
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);
    const producer = startDaemon(['producer'], env);
    // The filtered part done, the position moves past it: the filter is not asked again.
    await eventually(async () => Number(await bed.redis.hget(keys.mailbox(box), 'lastUid')) === 6, { what: 'the backfill' });
    expect((await readEntries(bed.redis, keys.stream)).map((e) => e.key)).toEqual(['f1@example.com', 'f3@example.com']);
    expect(await bed.redis.hget(keys.mailbox(box), 'filterUntil')).toBe('6');

    await bed.dovecot.append(USER, box, [mail('f7', 'newsletter@example.net')]);
    await eventually(async () => (await bed.redis.xlen(keys.stream)) === 3, { what: 'the new mail' });
    expect((await readEntries(bed.redis, keys.stream)).map((e) => e.key)).toEqual(['f1@example.com', 'f3@example.com', 'f7@example.com']);
    expect(await producer.stop()).toBe(0);
  });

  it('X-GM-RAW on a server without Gmail\'s extensions stops that mailbox as misconfigured, and /ready says why', async () => {
    bed.dovecot.seed(USER, 'NotGmail', [mail('g1', 'a@example.com')]);
    const env = producerEnv({ redisUrl: bed.redisServer.url, dovecot: bed.dovecot, mailboxes: ['NotGmail'], extra: { START_FROM: 'all', FETCH_FILTER: 'X-GM-RAW "has:attachment"' } });
    const producer = startDaemon(['producer'], env);
    const url = (await producer.waitForLog((l) => l.msg === 'health and metrics listening')).url as string;
    await producer.waitForLog((l) => l.msg === 'mailbox not read: a setting does not fit this server');
    const ready = await fetch(`${url}/ready`);
    expect(ready.status).toBe(503);
    expect(await ready.text()).toMatch(/imap NotGmail: not read: FETCH_FILTER: X-GM-RAW is Gmail's search/);
    expect(await bed.redis.xlen(accountKeys(env.MAILSTREAM_PREFIX!, USER).stream)).toBe(0);
    expect(await producer.stop()).toBe(0);
  });
});
