// Turns one fetched message into the contract's stream entry (src/core/entry.ts). Runs on the
// parse threads: raw bytes and IMAP metadata in, the serialised entry out. Without a blob store
// attachment content never leaves this function, only its metadata and sha256. With one, the raw
// message, each attachment and any text or html longer than INLINE_BODY_BYTES go to the store as
// they stream by, and the entry is finished only once every one of them is stored.
import { createHash } from 'node:crypto';
import type { AddressObject } from 'mailparser';
import type { BlobStore, PutResult } from '../core/blobs/blob-store.ts';
import { ENTRY_VERSION, type Address, type EmailEntry } from '../core/entry.ts';
import { BlobStoreUnavailableError } from '../core/errors.ts';
import { BlobWrites } from './blob-writes.ts';
import type { PreparedEntry } from './stream-append.ts';
import { parseMailStream, type ParsedMail } from './parse-mail.ts';
import { findStructuralProblems, HEAD_LIMIT, headerBlock, multipartBoundary, rawHeaderBlock, rawHeaderValue } from './raw-headers.ts';

/** Slices a whole message is fed in, so the parser's own buffers stay small. */
const FEED_CHUNK = 64 * 1024;

export interface FetchMeta {
  account: string;
  mailbox: string;
  uidValidity: string;
  uid: number;
  internalDate: string | null;
  flags: string[];
  size: number;
  /** Present when the server has X-GM-EXT-1. */
  gmail?: { msgId: string; threadId: string | null; labels: string[] };
}

export interface EntryOptions {
  /** Without a store: text and html are cut to this (MAX_BODY_BYTES). */
  maxBodyBytes: number;
  /** With a store: text and html are cut to this in the entry, kept whole in the store. @default 4096 */
  inlineBodyBytes?: number;
}

/** Headers kept in the entry (lower case); the rest stay in the mailbox. */
export const CHOSEN_HEADERS = [
  'from', 'sender', 'reply-to', 'to', 'cc', 'bcc', 'subject', 'date', 'message-id', 'in-reply-to',
  'references', 'list-id', 'list-unsubscribe', 'return-path', 'delivered-to', 'auto-submitted',
  'precedence', 'content-type', 'authentication-results', 'x-mailer',
];

/** `whole`: the UTF-8 bytes of a value that was cut (for the blob store). */
function cut(value: string | null, maxBytes: number): { value: string | null; truncated: boolean; whole?: Buffer } {
  if (value === null) return { value: null, truncated: false };
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length <= maxBytes) return { value, truncated: false };
  // A multi-byte character split at the cut decodes as U+FFFD; drop it.
  return { value: bytes.subarray(0, maxBytes).toString('utf8').replace(/\uFFFD+$/, ''), truncated: true, whole: bytes };
}

function addresses(field: AddressObject | AddressObject[] | undefined): Address[] {
  const out: Address[] = [];
  const visit = (list: AddressObject['value']) => {
    for (const a of list) {
      if (a.group) visit(a.group);
      else out.push({ name: a.name ?? '', address: a.address ?? '' });
    }
  };
  for (const obj of Array.isArray(field) ? field : field ? [field] : []) visit(obj.value);
  return out;
}

function stripBrackets(id: string | null | undefined): string | null {
  const trimmed = id?.trim().replace(/^<|>$/g, '').trim();
  return trimmed ? trimmed : null;
}

/** `contentHash`: sha256 (hex) of the raw message, the key of last resort. */
export function idempotencyKey(contentHash: string, messageId: string | null, gmailMsgId: string | undefined): Pick<EmailEntry, 'key' | 'keySource'> {
  if (gmailMsgId) return { key: `gmail:${gmailMsgId}`, keySource: 'gmail-msgid' };
  if (messageId) return { key: messageId, keySource: 'message-id' };
  return { key: contentHash, keySource: 'content-hash' };
}

function chosenHeaders(lines: ReadonlyArray<{ key: string; line: string }>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const { key, line } of lines) {
    if (!CHOSEN_HEADERS.includes(key)) continue;
    const value = line.slice(line.indexOf(':') + 1).replace(/\r?\n[ \t]+/g, ' ').trim();
    out[key] = key in out ? `${out[key]}\n${value}` : value;
  }
  return out;
}

function baseEntry(contentHash: string, meta: FetchMeta, messageId: string | null): EmailEntry {
  return {
    v: ENTRY_VERSION,
    type: 'message.new',
    ...idempotencyKey(contentHash, messageId, meta.gmail?.msgId),
    account: meta.account,
    mailbox: meta.mailbox,
    uidValidity: meta.uidValidity,
    uid: meta.uid,
    messageId,
    envelope: { date: null, subject: null, from: [], to: [], cc: [], bcc: [], replyTo: [], inReplyTo: null },
    headers: {},
    text: null,
    textTruncated: false,
    html: null,
    htmlTruncated: false,
    attachments: [],
    internalDate: meta.internalDate,
    flags: meta.flags,
    size: meta.size,
    ...(meta.gmail ? { gmail: meta.gmail } : {}),
    ingestedAt: new Date().toISOString(),
  };
}

function header<T>(parsed: ParsedMail, name: string): T | undefined {
  return parsed.headers.get(name) as T | undefined;
}

/** Fills the entry from the parse; returns the whole text and html where they were cut. */
function fromParsed(entry: EmailEntry, parsed: ParsedMail, head: Buffer, maxBodyBytes: number): { text?: Buffer; html?: Buffer } {
  const rawDate = rawHeaderValue(head, 'date');
  const date = header<Date>(parsed, 'date');
  // mailparser replaces an unreadable Date with "now"; an entry must not invent one.
  const dateOk = rawDate !== null && !Number.isNaN(Date.parse(rawDate)) && date instanceof Date;
  const subject = header<string>(parsed, 'subject');
  entry.envelope = {
    date: dateOk ? date.toISOString() : null,
    subject: typeof subject === 'string' ? subject : null,
    from: addresses(header(parsed, 'from')),
    to: addresses(header(parsed, 'to')),
    cc: addresses(header(parsed, 'cc')),
    bcc: addresses(header(parsed, 'bcc')),
    replyTo: addresses(header(parsed, 'reply-to')),
    inReplyTo: stripBrackets(header<string>(parsed, 'in-reply-to')),
  };
  entry.headers = chosenHeaders(parsed.headerLines);
  const text = cut(parsed.text, maxBodyBytes);
  const html = cut(parsed.html, maxBodyBytes);
  entry.text = text.value;
  entry.textTruncated = text.truncated;
  entry.html = html.value;
  entry.htmlTruncated = html.truncated;
  entry.attachments = parsed.attachments;
  return { text: text.whole, html: html.whole };
}

/**
 * Builds an entry from a message fed in chunks (a huge message streams through without ever
 * being whole in memory); a message mailparser cannot read still yields an entry, with parseError.
 */
export class EntryBuilder {
  private readonly meta: FetchMeta;
  private readonly bodyLimit: number;
  private readonly hash = createHash('sha256');
  private readonly parsing: Promise<ParsedMail>;
  private readonly feed: (chunk: Buffer | null) => void;
  private readonly blobs: BlobWrites | undefined;
  /** The raw message on its way to the store (which hashes it: then `hash` stays unused). */
  private readonly raw: ReturnType<BlobWrites['rawSink']> | undefined;
  private head = Buffer.alloc(0);
  private written = 0;
  private marker: Buffer | null | undefined;
  private tail = Buffer.alloc(0);
  private closingSeen = false;

  constructor(meta: FetchMeta, options: EntryOptions, store: BlobStore | null = null) {
    this.meta = meta;
    this.blobs = store ? new BlobWrites(store) : undefined;
    this.raw = this.blobs?.rawSink();
    this.bodyLimit = store ? (options.inlineBodyBytes ?? 4096) : options.maxBodyBytes;
    const stream = parseMailStream(this.blobs);
    this.parsing = stream.result;
    this.parsing.catch(() => undefined); // reported by finish()
    this.feed = stream.feed;
  }

  /** What this message put in the blob store so far (for the metrics). */
  get blobWrites() {
    return this.blobs?.records ?? [];
  }

  write(chunk: Buffer): void {
    if (this.raw) this.raw.write(chunk);
    else this.hash.update(chunk);
    const before = this.written;
    this.written += chunk.length;
    if (this.head.length < HEAD_LIMIT) this.head = Buffer.concat([this.head, chunk.subarray(0, HEAD_LIMIT - this.head.length)]);
    if (this.marker !== undefined) this.scanForClosingBoundary(chunk);
    else if (headerBlock(this.head).complete) {
      this.setMarker();
      // Everything seen so far: the head, and whatever of this chunk lies beyond it.
      this.scanForClosingBoundary(Buffer.concat([this.head, chunk.subarray(Math.max(0, HEAD_LIMIT - before))]));
    }
    this.feed(chunk);
  }

  private setMarker(): void {
    const boundary = multipartBoundary(this.head);
    this.marker = boundary === undefined ? null : Buffer.from(`--${boundary}--`);
  }

  /** Looks for the final `--boundary--` across chunk edges, keeping only a short tail. */
  private scanForClosingBoundary(chunk: Buffer): void {
    if (!this.marker || this.closingSeen) return;
    const window = Buffer.concat([this.tail, chunk]);
    if (window.includes(this.marker)) this.closingSeen = true;
    this.tail = window.subarray(Math.max(0, window.length - this.marker.length));
  }

  async finish(): Promise<PreparedEntry> {
    this.feed(null);
    const rawStored = this.raw?.end();
    if (this.marker === undefined) {
      this.setMarker();
      this.scanForClosingBoundary(this.head);
    }
    if (this.blobs) {
      // Every blob lands before the entry exists; one that did not fails the whole message.
      await Promise.allSettled([this.parsing]);
      await this.blobs.settle();
    }
    const raw = rawStored ? await rawStored : undefined;
    const contentHash = raw ? raw.sha256 : this.hash.digest('hex');
    let entry: EmailEntry;
    let whole: { text?: Buffer; html?: Buffer } = {};
    try {
      const parsed = await this.parsing;
      entry = baseEntry(contentHash, this.meta, stripBrackets(header<string>(parsed, 'message-id')));
      whole = fromParsed(entry, parsed, this.head, this.bodyLimit);
      const problems = findStructuralProblems(this.head, this.closingSeen);
      if (problems.length > 0) entry.parseError = `malformed message: ${problems.join('; ')}`;
    } catch (err) {
      if (err instanceof BlobStoreUnavailableError) throw err;
      entry = baseEntry(contentHash, this.meta, stripBrackets(rawHeaderValue(this.head, 'message-id')));
      entry.headers = { raw: rawHeaderBlock(this.head).toString('utf8') };
      entry.parseError = `mailparser failed: ${(err as Error).message}`;
    }
    if (this.blobs) await this.storeBodies(entry, whole, raw!);
    const internalDateMs = this.meta.internalDate ? Date.parse(this.meta.internalDate) : 0;
    return {
      uid: this.meta.uid,
      key: entry.key,
      email: JSON.stringify(entry),
      internalDateMs: Number.isNaN(internalDateMs) ? 0 : internalDateMs,
      parseError: entry.parseError !== undefined,
      flags: this.meta.flags,
      ...(this.meta.gmail ? { labels: this.meta.gmail.labels } : {}),
    };
  }

  /** The raw message's pointer, and the whole text and html where the entry holds only their start. */
  private async storeBodies(entry: EmailEntry, whole: { text?: Buffer; html?: Buffer }, raw: PutResult): Promise<void> {
    const [text, html] = await Promise.all([
      whole.text ? this.blobs!.put('text', whole.text) : undefined,
      whole.html ? this.blobs!.put('html', whole.html) : undefined,
    ]);
    if (text) entry.textRef = text.ref;
    if (html) entry.htmlRef = html.ref;
    entry.raw = { ref: raw.ref, size: raw.size, sha256: raw.sha256 };
  }
}

/** Feeds a whole message in slices, so the parser's own buffers stay small. */
export function feedWhole(builder: EntryBuilder, raw: Buffer): EntryBuilder {
  for (let offset = 0; offset < raw.length; offset += FEED_CHUNK) builder.write(raw.subarray(offset, offset + FEED_CHUNK));
  return builder;
}

/** Parses one whole message (and, with a store, puts its blobs). */
export function buildEntry(raw: Buffer, meta: FetchMeta, options: EntryOptions, store: BlobStore | null = null): Promise<PreparedEntry> {
  return feedWhole(new EntryBuilder(meta, options, store), raw).finish();
}
