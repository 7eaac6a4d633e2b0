// Appends stream entries of the contract's shape (`key` + `email` JSON, src/core/entry.ts)
// straight to an account's stream, and signals them as the producer does (src/core/signals.ts),
// so worker tests need no producer.
import type { Redis } from 'ioredis';
import { ENTRY_VERSION, type EmailEntry } from '../../src/core/entry.ts';
import { accountKeys } from '../../src/core/keys.ts';
import { SIGNAL_ACCOUNT_FIELD, SIGNALS_MAX_LEN } from '../../src/core/signals.ts';

export function sampleEmail(account: string, n: number, key = `<msg-${n}@example.com>`): EmailEntry {
  const now = new Date().toISOString();
  return {
    v: ENTRY_VERSION, type: 'message.new', key, keySource: 'message-id', account, mailbox: 'INBOX', uidValidity: '1', uid: n,
    messageId: key,
    envelope: {
      date: now, subject: `Message ${n}`, from: [{ name: 'Sender', address: `sender${n % 7}@example.org` }],
      to: [{ name: '', address: account }, { name: 'Other', address: 'other@example.net' }], cc: [], bcc: [], replyTo: [], inReplyTo: null,
    },
    headers: { 'content-type': 'text/plain' },
    text: `Body of message ${n}`, textTruncated: false, html: null, htmlTruncated: false,
    attachments: n % 5 === 0 ? [{ filename: 'a.txt', contentType: 'text/plain', size: 3, sha256: 'ab'.repeat(32), contentId: null, disposition: 'attachment' }] : [],
    internalDate: now, flags: [], size: 400 + n, ingestedAt: now,
  };
}

/**
 * Appends `count` emails with keys `<msg-<n>@example.com>` (n from `from`); returns their keys.
 * `signal: false` leaves out the signal, as when it is lost.
 */
export async function appendEmails(redis: Redis, prefix: string, account: string, count: number, from = 0, { signal = true } = {}): Promise<string[]> {
  const { stream, signals } = accountKeys(prefix, account);
  const keys: string[] = [];
  for (let start = from; start < from + count; start += 500) {
    const pipeline = redis.pipeline();
    for (let n = start; n < Math.min(from + count, start + 500); n++) {
      const email = sampleEmail(account, n);
      keys.push(email.key);
      pipeline.xadd(stream, '*', 'key', email.key, 'email', JSON.stringify(email));
    }
    await pipeline.exec();
    if (signal) await redis.xadd(signals, 'MAXLEN', '~', SIGNALS_MAX_LEN, '*', SIGNAL_ACCOUNT_FIELD, account);
  }
  return keys;
}
