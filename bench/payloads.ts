// Stream entries for the worker benchmarks: a realistic email JSON of a fixed size (4 KB by
// default), the same bytes for mailstream, the plain ioredis loop and BullMQ.
import { ENTRY_VERSION, type EmailEntry } from '../src/core/entry.ts';
import type { RedisClient } from '../src/core/redis.ts';

export function emailJson(i: number, account: string, bytes = 4096): string {
  const entry: EmailEntry = {
    v: ENTRY_VERSION,
    type: 'message.new',
    key: `bench-${i}@bench.mailstream.test`,
    keySource: 'message-id',
    account,
    mailbox: 'INBOX',
    uidValidity: '1',
    uid: i + 1,
    messageId: `bench-${i}@bench.mailstream.test`,
    envelope: {
      date: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString(), subject: `bench message ${i}`,
      from: [{ name: 'Sender', address: 'sender@example.org' }], to: [{ name: '', address: account }],
      cc: [], bcc: [], replyTo: [], inReplyTo: null,
    },
    headers: { 'content-type': 'text/plain; charset=utf-8' },
    text: '',
    textTruncated: false,
    html: null,
    htmlTruncated: false,
    attachments: [],
    internalDate: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString(),
    flags: [],
    size: bytes,
    ingestedAt: new Date().toISOString(),
  };
  const base = JSON.stringify(entry).length;
  entry.text = 'x'.repeat(Math.max(0, bytes - base));
  return JSON.stringify(entry);
}

/** Appends `count` entries (fields `key`, `email`) in pipelined chunks. */
export async function fillStream(redis: RedisClient, stream: string, account: string, count: number, offset = 0): Promise<void> {
  const CHUNK = 1000;
  for (let start = 0; start < count; start += CHUNK) {
    const pipeline = redis.pipeline();
    for (let i = start; i < Math.min(count, start + CHUNK); i++) {
      pipeline.xadd(stream, '*', 'key', `bench-${offset + i}@bench.mailstream.test`, 'email', emailJson(offset + i, account));
    }
    await pipeline.exec();
  }
}
