// Turns one fetched message into the contract's stream entry (src/core/entry.ts). Runs on the
// parse threads, so it is pure: raw bytes and IMAP metadata in, the serialised entry out.
// Attachment content never leaves this function, only its metadata and sha256.
import { createHash } from 'node:crypto';
import { simpleParser, type AddressObject, type ParsedMail } from 'mailparser';
import { ENTRY_VERSION, type Address, type EmailEntry } from '../core/entry.ts';
import type { PreparedEntry } from './stream-append.ts';
import { findStructuralProblems, rawHeaderBlock, rawHeaderValue } from './raw-headers.ts';

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

export interface EntryOptions { maxBodyBytes: number }

/** Headers kept in the entry (lower case); the rest stay in the mailbox. */
export const CHOSEN_HEADERS = [
  'from', 'sender', 'reply-to', 'to', 'cc', 'bcc', 'subject', 'date', 'message-id', 'in-reply-to',
  'references', 'list-id', 'list-unsubscribe', 'return-path', 'delivered-to', 'auto-submitted',
  'precedence', 'content-type', 'authentication-results', 'x-mailer',
];

function cut(value: string | null, maxBytes: number): { value: string | null; truncated: boolean } {
  if (value === null) return { value: null, truncated: false };
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length <= maxBytes) return { value, truncated: false };
  // A multi-byte character split at the cut decodes as U+FFFD; drop it.
  return { value: bytes.subarray(0, maxBytes).toString('utf8').replace(/\uFFFD+$/, ''), truncated: true };
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

export function idempotencyKey(raw: Buffer, messageId: string | null, gmailMsgId: string | undefined): Pick<EmailEntry, 'key' | 'keySource'> {
  if (gmailMsgId) return { key: `gmail:${gmailMsgId}`, keySource: 'gmail-msgid' };
  if (messageId) return { key: messageId, keySource: 'message-id' };
  return { key: createHash('sha256').update(raw).digest('hex'), keySource: 'content-hash' };
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

function baseEntry(raw: Buffer, meta: FetchMeta, messageId: string | null): EmailEntry {
  return {
    v: ENTRY_VERSION,
    ...idempotencyKey(raw, messageId, meta.gmail?.msgId),
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

function fromParsed(entry: EmailEntry, parsed: ParsedMail, raw: Buffer, options: EntryOptions): void {
  const rawDate = rawHeaderValue(raw, 'date');
  // mailparser replaces an unreadable Date with "now"; an entry must not invent one.
  const dateOk = rawDate !== null && !Number.isNaN(Date.parse(rawDate)) && parsed.date instanceof Date;
  entry.envelope = {
    date: dateOk ? parsed.date!.toISOString() : null,
    subject: parsed.subject ?? null,
    from: addresses(parsed.from),
    to: addresses(parsed.to),
    cc: addresses(parsed.cc),
    bcc: addresses(parsed.bcc),
    replyTo: addresses(parsed.replyTo),
    inReplyTo: stripBrackets(parsed.inReplyTo),
  };
  entry.headers = chosenHeaders(parsed.headerLines);
  const text = cut(parsed.text ?? null, options.maxBodyBytes);
  const html = cut(typeof parsed.html === 'string' ? parsed.html : null, options.maxBodyBytes);
  entry.text = text.value;
  entry.textTruncated = text.truncated;
  entry.html = html.value;
  entry.htmlTruncated = html.truncated;
  entry.attachments = parsed.attachments.map((a) => ({
    filename: a.filename ?? null,
    contentType: a.contentType,
    size: a.size ?? a.content.length,
    sha256: createHash('sha256').update(a.content).digest('hex'),
    contentId: a.contentId ?? null,
    disposition: a.contentDisposition ?? null,
  }));
}

/** Parses one message; a message mailparser cannot read still yields an entry, with parseError. */
export async function buildEntry(raw: Buffer, meta: FetchMeta, options: EntryOptions): Promise<PreparedEntry> {
  let entry: EmailEntry;
  try {
    const parsed = await simpleParser(raw, { skipHtmlToText: true, skipTextToHtml: true, skipImageLinks: true, skipTextLinks: true });
    entry = baseEntry(raw, meta, stripBrackets(parsed.messageId));
    fromParsed(entry, parsed, raw, options);
    const problems = findStructuralProblems(raw);
    if (problems.length > 0) entry.parseError = `malformed message: ${problems.join('; ')}`;
  } catch (err) {
    entry = baseEntry(raw, meta, stripBrackets(rawHeaderValue(raw, 'message-id')));
    entry.headers = { raw: rawHeaderBlock(raw).toString('utf8') };
    entry.parseError = `mailparser failed: ${(err as Error).message}`;
  }
  const internalDateMs = meta.internalDate ? Date.parse(meta.internalDate) : 0;
  return {
    uid: meta.uid,
    key: entry.key,
    email: JSON.stringify(entry),
    internalDateMs: Number.isNaN(internalDateMs) ? 0 : internalDateMs,
    parseError: entry.parseError !== undefined,
  };
}
