// The entry mapping with a blob store (a real file store in a temporary directory): the raw
// message, each attachment and long bodies are stored, the entry points at them, and a store
// that fails makes the message fail instead of yielding an entry without its blobs.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { simpleParser } from 'mailparser';
import { afterAll, describe, expect, it } from 'vitest';
import { FileBlobStore } from '../../src/core/blobs/file-store.ts';
import { ENTRY_VERSION, type EmailEntry } from '../../src/core/entry.ts';
import { BlobStoreUnavailableError } from '../../src/core/errors.ts';
import { buildEntry, EntryBuilder, type FetchMeta } from '../../src/producer/email-entry.ts';
import { blobBytes } from '../helpers/blob-testbed.ts';
import { makeMail, mulberry32 } from '../helpers/corpus.ts';

const META: FetchMeta = { account: 'a@example.com', mailbox: 'INBOX', uidValidity: '7', uid: 3, internalDate: '2026-01-02T03:04:05.000Z', flags: [], size: 10 };
const OPTIONS = { maxBodyBytes: 1024 * 1024, inlineBodyBytes: 4096 };
const dirs: string[] = [];
afterAll(() => { for (const dir of dirs) rmSync(dir, { recursive: true, force: true }); });

function store(): FileBlobStore {
  const dir = mkdtempSync(join(tmpdir(), 'ms-entry-blobs-'));
  dirs.push(dir);
  return new FileBlobStore({ dir, fsync: false });
}

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const stored = blobBytes;

describe('entry with a blob store', () => {
  it('stores the raw message byte for byte and each attachment decoded, and points at them', async () => {
    const s = store();
    const mail = makeMail('attachment', 1, mulberry32(5));
    const builder = new EntryBuilder(META, OPTIONS, s);
    for (let i = 0; i < mail.raw.length; i += 1000) builder.write(mail.raw.subarray(i, i + 1000));
    const prepared = await builder.finish();
    const entry = JSON.parse(prepared.email) as EmailEntry;
    expect(entry.v).toBe(ENTRY_VERSION);
    expect(entry.raw).toEqual({ ref: `sha256:${sha(mail.raw)}`, size: mail.raw.length, sha256: sha(mail.raw) });
    expect(await stored(s, entry.raw!.ref)).toEqual(mail.raw);
    const expected = (await simpleParser(mail.raw)).attachments;
    expect(entry.attachments.map((a) => a.sha256)).toEqual(expected.map((a) => sha(a.content)));
    for (const [i, a] of entry.attachments.entries()) {
      expect(a.ref).toBe(`sha256:${a.sha256}`);
      expect(await stored(s, a.ref!)).toEqual(expected[i]!.content);
    }
    expect(builder.blobWrites.map((w) => w.kind).sort()).toEqual([...expected.map(() => 'attachment'), 'raw']);
    expect(builder.blobWrites.every((w) => w.result === 'created')).toBe(true);
  });

  it('a raw message arriving in separate buffers is stored as their concatenation', async () => {
    const s = store();
    const mail = makeMail('attachment', 2, mulberry32(6));
    const builder = new EntryBuilder(META, OPTIONS, s);
    // Copies, not views of one buffer: the pieces are joined by copying.
    for (let i = 0; i < mail.raw.length; i += 777) builder.write(Buffer.from(mail.raw.subarray(i, i + 777)));
    const entry = JSON.parse((await builder.finish()).email) as EmailEntry;
    expect(await stored(s, entry.raw!.ref)).toEqual(mail.raw);
  });

  it('keeps the start of a long text and html inline and the whole in the store; short ones need no ref', async () => {
    const s = store();
    const text = 'ü'.repeat(5000);
    const html = `<html><body>${'<p>paragraph</p>'.repeat(2000)}</body></html>`;
    const raw = Buffer.from(`Message-ID: <long@x>\r\nContent-Type: multipart/alternative; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${text}\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n${html}\r\n--b--\r\n`);
    const entry = JSON.parse((await buildEntry(raw, META, OPTIONS, s)).email) as EmailEntry;
    expect(entry.textTruncated).toBe(true);
    expect(Buffer.byteLength(entry.text!)).toBeLessThanOrEqual(4096);
    expect((await stored(s, entry.textRef!)).toString('utf8')).toBe(text);
    expect(entry.htmlTruncated).toBe(true);
    expect((await stored(s, entry.htmlRef!)).toString('utf8')).toBe(html);

    const short = JSON.parse((await buildEntry(makeMail('alternative', 2, mulberry32(3)).raw, META, OPTIONS, s)).email) as EmailEntry;
    expect(short.textTruncated).toBe(false);
    expect(short).not.toHaveProperty('textRef');
    expect(short).not.toHaveProperty('htmlRef');
    expect(short.raw?.ref).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('the content-hash key is the raw blob\'s sha256, as without a store', async () => {
    const mail = makeMail('no-message-id', 4, mulberry32(8));
    const withStore = await buildEntry(mail.raw, META, OPTIONS, store());
    const without = await buildEntry(mail.raw, META, OPTIONS);
    expect(withStore.key).toBe(without.key);
    expect(withStore.key).toBe(sha(mail.raw));
  });

  it('a malformed message still has its raw source stored', async () => {
    const s = store();
    const mail = makeMail('malformed', 6, mulberry32(2));
    const entry = JSON.parse((await buildEntry(mail.raw, META, OPTIONS, s)).email) as EmailEntry;
    expect(entry.parseError).toBeDefined();
    expect(await stored(s, entry.raw!.ref)).toEqual(mail.raw);
  });

  it('a store that cannot write fails the message (no entry), attachments and all', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ms-entry-blobs-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'file'), '');
    const broken = new FileBlobStore({ dir: join(dir, 'file') });
    for (const kind of ['plain', 'attachment'] as const) {
      const builder = new EntryBuilder(META, OPTIONS, broken);
      const raw = makeMail(kind, 7, mulberry32(4)).raw;
      for (let i = 0; i < raw.length; i += 500) builder.write(raw.subarray(i, i + 500));
      await expect(builder.finish()).rejects.toBeInstanceOf(BlobStoreUnavailableError);
      expect(builder.blobWrites.some((w) => w.result === 'failed')).toBe(true);
    }
  });
});
