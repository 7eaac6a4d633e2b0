// Stream entries as the worker sees them: parsed from XREADGROUP/XCLAIM replies without touching
// the email JSON (sinks that send it as-is never parse it), plus the dedupe marker name of a key.
import { createHash } from 'node:crypto';
import { ENTRY_FIELDS, entryTypeOf, type EntryType } from '../core/entry.ts';
import type { GroupKeys } from '../core/keys.ts';

export interface StreamEntry {
  /** Stream entry id (`<ms>-<seq>`). */
  id: string;
  /** The idempotency key (entry field `key`). */
  key: string;
  /** The email JSON exactly as the producer wrote it (entry field `email`): an EmailEntry, or a ChangeEvent. */
  email: string;
  /** Entry field `type`; absent means `message.new` (entries before version 3 have no type). */
  type?: EntryType;
}

/** What a reply held: entries to deliver, and ids whose payload is gone (trimmed while pending). */
export interface ParsedEntries { entries: StreamEntry[]; missing: string[] }

export type RawEntry = [id: string, fields: string[] | null | false];

export function parseEntries(raw: readonly RawEntry[]): ParsedEntries {
  const entries: StreamEntry[] = [];
  const missing: string[] = [];
  for (const [id, fields] of raw) {
    let key: string | undefined;
    let email: string | undefined;
    let type: string | undefined;
    if (fields) {
      for (let i = 0; i + 1 < fields.length; i += 2) {
        if (fields[i] === ENTRY_FIELDS.key) key = fields[i + 1];
        else if (fields[i] === ENTRY_FIELDS.email) email = fields[i + 1];
        else if (fields[i] === ENTRY_FIELDS.type) type = fields[i + 1];
      }
    }
    if (key === undefined || email === undefined) missing.push(id);
    else entries.push({ id, key, email, type: entryTypeOf(type) });
  }
  return { entries, missing };
}

/** When the entry was appended: the millisecond part of its id. */
export function appendedAtMs(id: string): number {
  return Number(id.slice(0, id.indexOf('-')));
}

/** Keys up to this length are kept as they are; longer ones are hashed to about the same length. */
const MAX_PLAIN_MARKER = 40;

/**
 * The dedupe marker key of an idempotency key. Long keys (a Message-ID can run to hundreds of
 * bytes) are replaced by 192 bits of their SHA-256 (no collision in any mailbox's lifetime), so a
 * marker costs about 150 bytes of Redis memory whatever the mail. There are millions of them.
 */
export function deliveredMarker(keys: GroupKeys, idempotencyKey: string): string {
  const id = idempotencyKey.length <= MAX_PLAIN_MARKER && !idempotencyKey.startsWith('sha256:')
    ? idempotencyKey
    : `sha256:${createHash('sha256').update(idempotencyKey).digest('base64url').slice(0, 32)}`;
  return keys.delivered(id);
}
