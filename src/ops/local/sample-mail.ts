// Generated sample mail for the demo, load test, bench and tests: deterministic (seeded) and
// varied MIME, so a run can be replayed.
// Kinds: plain, alternative (text + html), attachments, charsets (encoded words, latin-1,
// quoted-printable), huge (a large attachment), malformed (broken structure and headers), and
// no-message-id (the key falls back to a content hash).
import { createHash } from 'node:crypto';

export type MailKind = 'plain' | 'alternative' | 'attachment' | 'charset' | 'huge' | 'malformed' | 'no-message-id';

export interface GeneratedMail {
  raw: Buffer;
  kind: MailKind;
  /** Message-ID header value without brackets, or null. */
  messageId: string | null;
  subject: string;
}

export interface CorpusOptions {
  seed?: number;
  /** Share of each kind; defaults give a mixed mailbox with a few malformed ones. */
  mix?: Partial<Record<MailKind, number>>;
  /** Size of the attachment of `huge` mails. @default 2 MiB */
  hugeBytes?: number;
  /** Distinguishes Message-IDs of separate corpora in one test. */
  tag?: string;
}

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const DEFAULT_MIX: Record<MailKind, number> = {
  plain: 30, alternative: 25, attachment: 20, charset: 12, huge: 0, malformed: 8, 'no-message-id': 5,
};

const WORDS = 'ledger invoice meeting quarterly shipment receipt reminder draft budget review agenda summary customer ticket update report'.split(' ');

function words(random: () => number, n: number): string {
  return Array.from({ length: n }, () => WORDS[Math.floor(random() * WORDS.length)]).join(' ');
}

function bytes(random: () => number, n: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(random() * 256);
  return out;
}

function base64Lines(data: Buffer): string {
  return data.toString('base64').replace(/.{76}/g, '$&\r\n');
}

function date(i: number): string {
  return new Date(Date.UTC(2026, 0, 1) + i * 60_000).toUTCString().replace('GMT', '+0000');
}

function headers(fields: Array<[string, string]>): string {
  return fields.map(([k, v]) => `${k}: ${v}`).join('\r\n');
}

export function makeMail(kind: MailKind, i: number, random: () => number, options: CorpusOptions = {}): GeneratedMail {
  const tag = options.tag ?? 'c';
  const messageId = kind === 'no-message-id' ? null : `${tag}-${i}-${Math.floor(random() * 1e9)}@corpus.mailstream.test`;
  const subject = `${kind} #${i}: ${words(random, 4)}`;
  const common: Array<[string, string]> = [
    ['From', `"Sender ${i}" <sender${i % 17}@example.org>`],
    ['To', `user@example.com`],
    ['Date', date(i)],
    ...(messageId ? [['Message-ID', `<${messageId}>`] as [string, string]] : []),
    ['MIME-Version', '1.0'],
  ];
  const text = `${words(random, 20 + Math.floor(random() * 80))}\r\nmessage ${i}\r\n`;
  let raw: string | Buffer;
  switch (kind) {
    case 'plain':
    case 'no-message-id':
      raw = `${headers([...common, ['Subject', subject], ['Content-Type', 'text/plain; charset=utf-8']])}\r\n\r\n${text}`;
      break;
    case 'alternative': {
      const b = `alt-${i}-${Math.floor(random() * 1e6)}`;
      raw = `${headers([...common, ['Subject', subject], ['Content-Type', `multipart/alternative; boundary="${b}"`]])}\r\n\r\n`
        + `--${b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${text}\r\n`
        + `--${b}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>${text}</p><a href="https://example.org/${i}">link</a></body></html>\r\n`
        + `--${b}--\r\n`;
      break;
    }
    case 'attachment':
    case 'huge': {
      const b = `mix-${i}-${Math.floor(random() * 1e6)}`;
      const size = kind === 'huge' ? (options.hugeBytes ?? 2 * 1024 * 1024) : 1024 + Math.floor(random() * 12_000);
      const parts = kind === 'huge' ? 1 : 1 + Math.floor(random() * 2);
      let body = `--${b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${text}\r\n`;
      for (let p = 0; p < parts; p++) {
        const data = bytes(random, size);
        body += `--${b}\r\nContent-Type: application/octet-stream; name="file-${i}-${p}.bin"\r\n`
          + `Content-Disposition: attachment; filename="file-${i}-${p}.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n`
          + `${base64Lines(data)}\r\n`;
      }
      raw = `${headers([...common, ['Subject', subject], ['Content-Type', `multipart/mixed; boundary="${b}"`]])}\r\n\r\n${body}--${b}--\r\n`;
      break;
    }
    case 'charset': {
      const unicodeSubject = `Grüße · Привет · こんにちは #${i}`;
      const encoded = `=?UTF-8?B?${Buffer.from(unicodeSubject).toString('base64')}?=`;
      const latin1 = Buffer.from(`Caf\xe9 cr\xe8me br\xfbl\xe9e, message ${i}\r\n`, 'latin1');
      const head = headers([...common, ['Subject', encoded], ['Content-Type', 'text/plain; charset=iso-8859-1'], ['Content-Transfer-Encoding', '8bit']]);
      raw = Buffer.concat([Buffer.from(`${head}\r\n\r\n`), latin1]);
      return { raw, kind, messageId, subject: unicodeSubject };
    }
    case 'malformed': {
      // Unterminated multipart, a header without a colon, invalid base64 and a bogus date.
      const b = `broken-${i}`;
      raw = `From: not an address <<<\r\nTo: user@example.com\r\n${messageId ? `Message-ID: <${messageId}>\r\n` : ''}`
        + `Date: the thirty-second of never\r\nSubject: ${subject}\r\nThis line is not a header\r\n`
        + `Content-Type: multipart/mixed; boundary="${b}"\r\n\r\n`
        + `--${b}\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n@@@not*base64!!!\r\n`
        + `--${b}\r\nContent-Type: text/plain; charset=x-unknown-charset\r\n\r\n\xff\xfe broken bytes ${i}\r\n`;
      break;
    }
  }
  return { raw: Buffer.isBuffer(raw) ? raw : Buffer.from(raw, 'latin1'), kind, messageId, subject };
}

/** N mails of mixed kinds, the same for the same seed. */
export function generateCorpus(n: number, options: CorpusOptions = {}): GeneratedMail[] {
  const random = mulberry32(options.seed ?? 1);
  const mix = { ...DEFAULT_MIX, ...options.mix };
  const kinds = Object.entries(mix).filter(([, w]) => w > 0) as Array<[MailKind, number]>;
  const total = kinds.reduce((s, [, w]) => s + w, 0);
  return Array.from({ length: n }, (_, i) => {
    let pick = random() * total;
    const kind = kinds.find(([, w]) => (pick -= w) < 0)?.[0] ?? 'plain';
    return makeMail(kind, i, random, options);
  });
}

/** The content hash the producer falls back to for mail without a Message-ID. */
export function contentHash(raw: Buffer): string {
  return createHash('sha256').update(raw).digest('hex');
}
