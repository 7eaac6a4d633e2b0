// The entry mapping and the pure helpers of the producer's sync: keys, truncation, attachments,
// damage detection, UID sets and batch cutting.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { buildEntry, EntryBuilder, idempotencyKey, type FetchMeta } from '../../src/producer/email-entry.ts';
import { findStructuralProblems, rawHeaderValue } from '../../src/producer/raw-headers.ts';
import { cutBatches, uidSet } from '../../src/producer/mailbox-sync.ts';
import { generateCorpus, makeMail, mulberry32 } from '../helpers/corpus.ts';
import { ENTRY_VERSION, type EmailEntry } from '../../src/core/entry.ts';

const META: FetchMeta = { account: 'a@example.com', mailbox: 'INBOX', uidValidity: '7', uid: 3, internalDate: '2026-01-02T03:04:05.000Z', flags: ['\\Seen'], size: 10 };

async function entryOf(raw: Buffer, meta: FetchMeta = META, maxBodyBytes = 1024 * 1024): Promise<EmailEntry> {
  return JSON.parse((await buildEntry(raw, meta, { maxBodyBytes })).email) as EmailEntry;
}

describe('idempotency key', () => {
  it('prefers Gmail X-GM-MSGID, then Message-ID, then a content hash', () => {
    expect(idempotencyKey('abc', 'm@x', '1234')).toEqual({ key: 'gmail:1234', keySource: 'gmail-msgid' });
    expect(idempotencyKey('abc', 'm@x', undefined)).toEqual({ key: 'm@x', keySource: 'message-id' });
    expect(idempotencyKey('abc', null, undefined)).toEqual({ key: 'abc', keySource: 'content-hash' });
  });

  it('hashes the whole raw message when there is no Message-ID, however it is fed', async () => {
    const mail = makeMail('no-message-id', 4, mulberry32(8));
    const whole = await buildEntry(mail.raw, META, { maxBodyBytes: 1024 });
    expect(whole.key).toBe(createHash('sha256').update(mail.raw).digest('hex'));
    const builder = new EntryBuilder(META, { maxBodyBytes: 1024 });
    for (let i = 0; i < mail.raw.length; i += 7) builder.write(mail.raw.subarray(i, i + 7));
    expect(await builder.finish()).toEqual({ ...whole, email: expect.any(String) });
  });
});

describe('buildEntry', () => {
  it('maps a message with attachments to the contract, content kept out', async () => {
    const mail = makeMail('attachment', 1, mulberry32(5));
    const entry = await entryOf(mail.raw);
    expect(entry).toMatchObject({ v: ENTRY_VERSION, key: mail.messageId, keySource: 'message-id', account: 'a@example.com', mailbox: 'INBOX', uidValidity: '7', uid: 3, messageId: mail.messageId, flags: ['\\Seen'], internalDate: META.internalDate });
    expect(entry.envelope.subject).toBe(mail.subject);
    expect(entry.envelope.from[0]!.address).toMatch(/@example\.org$/);
    expect(entry.headers['message-id']).toBe(`<${mail.messageId}>`);
    expect(entry.attachments.length).toBeGreaterThan(0);
    for (const a of entry.attachments) {
      expect(a.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(a).not.toHaveProperty('content');
      expect(a).not.toHaveProperty('ref');
    }
    expect(entry.parseError).toBeUndefined();
  });

  it('cuts text and html to MAX_BODY_BYTES with truncation flags, never splitting a character', async () => {
    const body = 'é'.repeat(3000);
    const raw = Buffer.from(`Message-ID: <t@x>\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${body}`);
    const entry = await entryOf(raw, META, 1025);
    expect(entry.textTruncated).toBe(true);
    expect(Buffer.byteLength(entry.text!)).toBeLessThanOrEqual(1025);
    expect(entry.text!.endsWith('é')).toBe(true);
    const short = await entryOf(raw, META, 100_000);
    expect(short.textTruncated).toBe(false);
  });

  it('keeps Gmail identity and labels when the server has X-GM-EXT-1', async () => {
    const entry = await entryOf(makeMail('plain', 2, mulberry32(6)).raw, { ...META, gmail: { msgId: '1789', threadId: '1788', labels: ['\\Inbox'] } });
    expect(entry.key).toBe('gmail:1789');
    expect(entry.gmail).toEqual({ msgId: '1789', threadId: '1788', labels: ['\\Inbox'] });
  });

  it('finds the closing boundary of a multipart fed in tiny slices', async () => {
    const mail = makeMail('attachment', 5, mulberry32(10));
    const builder = new EntryBuilder(META, { maxBodyBytes: 1 << 20 });
    for (let i = 0; i < mail.raw.length; i += 5) builder.write(mail.raw.subarray(i, i + 5));
    expect((JSON.parse((await builder.finish()).email) as EmailEntry).parseError).toBeUndefined();
  });

  it('marks every malformed corpus message with parseError and no invented date; well-formed ones stay clean', async () => {
    for (const mail of generateCorpus(60, { seed: 9 })) {
      const entry = await entryOf(mail.raw);
      if (mail.kind === 'malformed') {
        expect(entry.parseError).toMatch(/malformed message/);
        expect(entry.envelope.date).toBeNull();
      } else {
        expect(entry.parseError).toBeUndefined();
      }
    }
  });
});

describe('raw headers', () => {
  it('reads folded values and names the damage', () => {
    const raw = Buffer.from('Subject: a\r\n b\r\nDate: never\r\nnot a header\r\nContent-Type: multipart/mixed; boundary="q"\r\n\r\n--q\r\n\r\nx\r\n');
    expect(rawHeaderValue(raw, 'subject')).toBe('a b');
    expect(findStructuralProblems(raw, false)).toEqual(['header line without a field name', 'Date header is not a date', 'multipart body without its closing boundary']);
  });
});

describe('batches', () => {
  it('writes UID sets with ranges', () => {
    expect(uidSet([3, 5, 6, 7, 8, 9, 12])).toBe('3,5:9,12');
    expect(uidSet([1])).toBe('1');
  });

  it('cuts by count and by bytes, never leaving an empty batch', () => {
    const listed = [10, 10, 10, 50, 10].map((size, i) => ({ uid: i + 1, size }));
    expect(cutBatches(listed, 2, 1000).map((b) => b.map((m) => m.uid))).toEqual([[1, 2], [3, 4], [5]]);
    expect(cutBatches(listed, 10, 40).map((b) => b.map((m) => m.uid))).toEqual([[1, 2, 3], [4], [5]]);
  });
});
