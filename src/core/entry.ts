// The stream entry: the one type producer and worker share, and the contract with any other
// consumer of the stream. Each entry has three fields: `key` (the idempotency key), `email` (the
// JSON: an EmailEntry, or a ChangeEvent) and `type` (what the JSON is). Bump ENTRY_VERSION on any
// change a consumer could notice, and add, never rename.
//
// Version 2 added the blob refs (`raw`, `textRef`, `htmlRef`, `attachments[].ref`). They are there
// only when the producer runs with a blob store (BLOB_STORE_URL); a ref is `sha256:<hex>`, the
// content address of an object in that store, written before the entry was appended.
//
// Version 3 added the entry types: `message.new` (an EmailEntry, as before) and, with
// TRACK_CHANGES, what happened to a message after it arrived: `message.updated` (its flags or
// Gmail labels changed), `message.moved` (a message already ingested showed up at another UID,
// another mailbox's most often) and `message.deleted` (its UID is gone from the mailbox). Entries
// of earlier versions have no `type` field: they are all `message.new`.

export const ENTRY_VERSION = 3;

/** Field names of a stream entry. */
export const ENTRY_FIELDS = { key: 'key', email: 'email', type: 'type' } as const;

export const ENTRY_TYPES = ['message.new', 'message.updated', 'message.moved', 'message.deleted'] as const;
export type EntryType = typeof ENTRY_TYPES[number];

/** The type of an entry whose `type` field says so, or `message.new` (entries before version 3 have none). */
export function entryTypeOf(field: string | undefined): EntryType {
  return (ENTRY_TYPES as readonly string[]).includes(field ?? '') ? field as EntryType : 'message.new';
}

export interface Address { name: string; address: string }

export interface AttachmentMeta {
  filename: string | null;
  contentType: string;
  /** Decoded size in bytes. */
  size: number;
  /** Of the decoded content. */
  sha256: string;
  contentId: string | null;
  disposition: string | null;
  /** The decoded content in the blob store (with a store only). */
  ref?: string;
}

/** An object in the blob store. */
export interface BlobPointer {
  /** `sha256:<hex>`. */
  ref: string;
  size: number;
  sha256: string;
}

export interface EmailEntry {
  v: typeof ENTRY_VERSION;
  type: 'message.new';
  /** The idempotency key, also the entry's `key` field. */
  key: string;
  /** Where the key came from: Gmail's X-GM-MSGID, the Message-ID header, or a hash of the content. */
  keySource: 'gmail-msgid' | 'message-id' | 'content-hash';
  account: string;
  mailbox: string;
  uidValidity: string;
  uid: number;
  messageId: string | null;
  envelope: {
    date: string | null;
    subject: string | null;
    from: Address[];
    to: Address[];
    cc: Address[];
    bcc: Address[];
    replyTo: Address[];
    inReplyTo: string | null;
  };
  /** Chosen headers, lower-case names; values as strings (repeated headers joined by newlines). */
  headers: Record<string, string>;
  /** The plain-text body, cut to INLINE_BODY_BYTES with a store, else MAX_BODY_BYTES (UTF-8). */
  text: string | null;
  textTruncated: boolean;
  /** The whole text (UTF-8) in the blob store, when it was cut here. */
  textRef?: string;
  html: string | null;
  htmlTruncated: boolean;
  /** The whole html (UTF-8) in the blob store, when it was cut here. */
  htmlRef?: string;
  attachments: AttachmentMeta[];
  /** The message exactly as the IMAP server sent it (RFC 822), in the blob store. */
  raw?: BlobPointer;
  /** IMAP INTERNALDATE (ISO 8601). */
  internalDate: string | null;
  flags: string[];
  size: number;
  gmail?: { msgId: string; threadId: string | null; labels: string[] };
  /** When the producer appended the entry (ISO 8601), for end-to-end latency. */
  ingestedAt: string;
  /** Set when mailparser could not parse the message; headers then hold the raw header block. */
  parseError?: string;
}

/**
 * Something that happened to a message after its `message.new`. `key` is the event's own
 * idempotency key (a re-sent event carries the same one); `messageKey` is the EmailEntry's key.
 * Events of one mailbox are in the stream in the order the producer saw them.
 */
interface ChangeBase {
  v: typeof ENTRY_VERSION;
  /** `<messageKey>#updated#<mailbox>:<uidValidity>:<uid>:<m<modseq> | s<scan>>`, `...#moved#<mailbox>:<uidValidity>:<uid>`, `...#deleted#<mailbox>:<uidValidity>:<uid>`. */
  key: string;
  messageKey: string;
  account: string;
  mailbox: string;
  uidValidity: string;
  uid: number;
  /** When the producer noticed the change (ISO 8601); the server does not say when it happened. */
  observedAt: string;
}

/** The message's flags (or Gmail labels) are now these. */
export interface MessageUpdated extends ChangeBase {
  type: 'message.updated';
  flags: string[];
  gmail?: { labels: string[] };
  /** The message's MODSEQ after the change (CONDSTORE), null when found by a scan. */
  modseq: string | null;
}

/** A message already ingested (same key) is at this UID now: moved or copied here, or renumbered by a UIDVALIDITY change. */
export interface MessageMoved extends ChangeBase {
  type: 'message.moved';
  flags: string[];
  gmail?: { labels: string[] };
}

/** The UID is gone from the mailbox (expunged, or moved away: the new place comes as its own message.moved). */
export interface MessageDeleted extends ChangeBase {
  type: 'message.deleted';
}

export type ChangeEvent = MessageUpdated | MessageMoved | MessageDeleted;

/** What the `email` field of an entry holds. */
export type StreamPayload = EmailEntry | ChangeEvent;
