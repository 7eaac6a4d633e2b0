// TRACK_CHANGES against Dovecot (CONDSTORE and QRESYNC), through the daemons: 200 messages
// ingested, then 50 marked seen or flagged, 20 moved to Archive and 30 deleted by another IMAP
// client while the producer is killed with SIGKILL twice (once at a random moment, once right
// after it read changes it had not appended yet). The stream and the JSONL sink end with one
// entry per change: a flag change is one message.updated, a delete one message.deleted, a move
// one message.deleted in INBOX plus one message.moved in Archive; none missing, none repeated
// under another key.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ImapFlow } from 'imapflow';
import { startTestRedis } from '../helpers/test-redis.ts';
import { generateCorpus } from '../helpers/corpus.ts';
import { startDaemon, type Daemon } from '../helpers/cli.ts';
import { eventually } from '../helpers/ports.ts';
import { producerEnv } from '../helpers/producer-env.ts';
import { useProducerTestbed } from '../helpers/producer-testbed.ts';
import { accountKeys } from '../../src/core/keys.ts';
import type { StreamPayload } from '../../src/core/entry.ts';

const USER = 'user@example.com';
const TOTAL = 200;
const bed = useProducerTestbed({ startRedis: () => startTestRedis({ aof: true }) });

/** Every entry of the stream: its key field, its type field and the JSON. */
async function streamEntries(stream: string): Promise<Array<{ key: string; type: string; payload: StreamPayload }>> {
  return (await bed.redis.xrange(stream, '-', '+')).map(([, f]) => {
    const fields: Record<string, string> = {};
    for (let i = 0; i + 1 < f.length; i += 2) fields[f[i]!] = f[i + 1]!;
    return { key: fields.key!, type: fields.type!, payload: JSON.parse(fields.email!) as StreamPayload };
  });
}

/** A mail client of the same user: logs in with the password and changes the mailbox. */
async function mailClient(): Promise<ImapFlow> {
  const client = new ImapFlow({
    host: '127.0.0.1', port: bed.dovecot.port, secure: false, auth: { user: USER, pass: bed.dovecot.users[0]!.password }, logger: false,
    tls: { ca: readFileSync(bed.dovecot.caFile), servername: 'localhost' }, // STARTTLS on the plain port
  });
  client.on('error', () => undefined);
  await client.connect();
  await client.mailboxOpen('INBOX');
  return client;
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('TRACK_CHANGES against CONDSTORE/QRESYNC', () => {
  it('one event per change, across two kills of the producer', async () => {
    const corpus = generateCorpus(TOTAL, { seed: 131, tag: 'changes' });
    bed.dovecot.seed(USER, 'INBOX', corpus.map((m) => m.raw));
    bed.dovecot.seed(USER, 'Archive', []); // created and owned by the mail processes' user, so a move can write into it
    const out = join(mkdtempSync(join(tmpdir(), 'ms-changes-')), 'out.jsonl');
    const env = producerEnv({
      redisUrl: bed.redisServer.url, dovecot: bed.dovecot, mailboxes: ['INBOX', 'Archive'],
      extra: { START_FROM: 'all', TRACK_CHANGES: 'flags,deletes', POLL_INTERVAL_MS: '1000', FETCH_BATCH_SIZE: '50' },
    });
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);
    const worker = startDaemon(['worker'], {
      REDIS_URL: bed.redisServer.url, MAILSTREAM_PREFIX: env.MAILSTREAM_PREFIX, IMAP_USER: USER, SINK_URL: `file://${out}`,
      HTTP_PORT: '0', READ_BLOCK_MS: '200', RETRY_BASE_MS: '200',
    });
    let producer: Daemon = startDaemon(['producer'], env);
    await eventually(async () => Number(await bed.redis.hget(keys.mailbox('INBOX'), 'lastUid')) === TOTAL, { what: 'the whole INBOX' });
    const messageKeys = new Map((await streamEntries(keys.stream)).map((e) => [(e.payload as { uid: number }).uid, e.key]));
    expect(messageKeys.size).toBe(TOTAL);

    // UIDs 1-50 get a flag, 51-70 go to Archive, 71-100 are deleted: half of each now...
    const client = await mailClient();
    const flag = (uids: number[]) => Promise.all(uids.map((uid) => client.messageFlagsAdd(String(uid), [uid % 2 ? '\\Seen' : '\\Flagged'], { uid: true })));
    await flag(range(1, 25));
    expect(await client.messageMove(range(51, 60).join(','), 'Archive', { uid: true })).toBeTruthy();
    await client.messageDelete(range(71, 85).join(','), { uid: true });
    // ... the producer is killed once some of it is in the stream ...
    await eventually(async () => (await bed.redis.xlen(keys.stream)) > TOTAL, { what: 'the first changes appended', intervalMs: 10 });
    expect(await producer.stop('SIGKILL')).toBe('SIGKILL');
    // ... the other half while it is down ...
    await flag(range(26, 50));
    expect(await client.messageMove(range(61, 70).join(','), 'Archive', { uid: true })).toBeTruthy();
    await client.messageDelete(range(86, 100).join(','), { uid: true });
    await client.logout();
    // ... it comes back and dies again right after reading those changes, before appending them ...
    const crashing = startDaemon(['producer'], { ...env, FAULT_INJECTION: 'after-change-fetch:1' });
    expect(await crashing.tracked.exited).toBe('SIGKILL');
    // ... and the third start finishes the job.
    producer = startDaemon(['producer'], env);
    const expected = TOTAL + 50 + 20 * 2 + 30;
    await eventually(async () => (await bed.redis.xlen(keys.stream)) >= expected, { what: 'every change in the stream' });

    const entries = await streamEntries(keys.stream);
    const events = entries.filter((e) => e.type !== 'message.new');
    expect(entries.filter((e) => e.type === 'message.new')).toHaveLength(TOTAL);
    const byType = (type: string) => events.filter((e) => e.type === type).map((e) => e.payload as StreamPayload & { messageKey: string; mailbox: string; uid: number });
    const updated = byType('message.updated');
    const moved = byType('message.moved');
    const deleted = byType('message.deleted');
    expect(updated.map((e) => e.messageKey).sort()).toEqual(range(1, 50).map((uid) => messageKeys.get(uid)!).sort());
    for (const e of updated) expect((e as unknown as { flags: string[] }).flags).toEqual([e.uid % 2 ? '\\Seen' : '\\Flagged']);
    expect(deleted.map((e) => e.messageKey).sort()).toEqual(range(51, 100).map((uid) => messageKeys.get(uid)!).sort());
    expect(new Set(deleted.map((e) => e.mailbox))).toEqual(new Set(['INBOX']));
    expect(moved.map((e) => e.messageKey).sort()).toEqual(range(51, 70).map((uid) => messageKeys.get(uid)!).sort());
    expect(new Set(moved.map((e) => e.mailbox))).toEqual(new Set(['Archive']));
    // Exactly one entry per change: no key twice, no change under two keys.
    expect(events).toHaveLength(expected - TOTAL);
    expect(new Set(entries.map((e) => e.key)).size).toBe(entries.length);

    // The sink got each of them once, in the stream's order per mailbox.
    await eventually(() => readFileSync(out, 'utf8').split('\n').filter(Boolean).length >= expected, { what: 'the JSONL sink' });
    const lines = readFileSync(out, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { key: string; type: string });
    expect(lines).toHaveLength(expected);
    expect(new Set(lines.map((l) => l.key)).size).toBe(expected);
    expect(lines.filter((l) => l.type === 'message.deleted')).toHaveLength(50);
    expect(await producer.stop()).toBe(0);
    expect(await worker.stop()).toBe(0);
  });
});
