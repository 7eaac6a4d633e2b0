// The stream entry: the one type producer and worker share, and the contract with any other
// consumer of the stream. Each entry has two fields: `key` (the idempotency key) and `email`
// (this JSON). Bump ENTRY_VERSION on any change a consumer could notice, and add, never rename.

export const ENTRY_VERSION = 1;

/** Field names of a stream entry. */
export const ENTRY_FIELDS = { key: 'key', email: 'email' } as const;

export interface Address { name: string; address: string }

export interface AttachmentMeta {
  filename: string | null;
  contentType: string;
  size: number;
  sha256: string;
  contentId: string | null;
  disposition: string | null;
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
  text: string | null;
  textTruncated: boolean;
  html: string | null;
  htmlTruncated: boolean;
  attachments: AttachmentMeta[];
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
