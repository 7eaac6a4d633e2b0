// The stream entry: the one type producer and worker share, and the contract with any other
// consumer of the stream. Each entry has two fields: `key` (the idempotency key) and `email`
// (this JSON). Bump ENTRY_VERSION on any change a consumer could notice, and add, never rename.
//
// Version 2 added the blob refs (`raw`, `textRef`, `htmlRef`, `attachments[].ref`). They are there
// only when the producer runs with a blob store (BLOB_STORE_URL); a ref is `sha256:<hex>`, the
// content address of an object in that store, written before the entry was appended.

export const ENTRY_VERSION = 2;

/** Field names of a stream entry. */
export const ENTRY_FIELDS = { key: 'key', email: 'email' } as const;

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
