// What change tracking remembers of a message and the events it makes of a difference. Pure
// functions: the IMAP side (mailbox-changes.ts) feeds them what the server says, the scripts
// store what they return. Flags are compared as a set: `\Recent` belongs to a session, not the
// message, and `\Deleted` only announces an expunge (whose message.deleted says it for good),
// so neither counts as a change.
import { ENTRY_VERSION, type MessageDeleted, type MessageMoved, type MessageUpdated } from '../core/entry.ts';

/** What TRACK_CHANGES asks for. */
export interface TrackChanges {
  flags: boolean;
  /** Gmail labels (X-GM-LABELS); nothing to track on a server without X-GM-EXT-1. */
  labels: boolean;
  deletes: boolean;
  /** Without CONDSTORE (flags, labels) or QRESYNC (deletes): a full look at the mailbox this often. */
  scanIntervalMs: number;
}

export const TRACK_NOTHING: TrackChanges = Object.freeze({ flags: false, labels: false, deletes: false, scanIntervalMs: 0 });

export function tracksAnything(track: TrackChanges): boolean {
  return track.flags || track.labels || track.deletes;
}

/** What the producer last saw of one UID: the message's key, its flags and (Gmail) labels. */
export interface SeenMessage {
  key: string;
  flags: string[];
  labels: string[] | null;
}

/** Where a message is: the UID within its mailbox. */
export interface Location {
  account: string;
  mailbox: string;
  uidValidity: string;
  uid: number;
}

const UNTRACKED_FLAGS = new Set(['\\recent', '\\deleted']);

export function normalFlags(flags: Iterable<string>): string[] {
  return [...new Set(flags)].filter((f) => !UNTRACKED_FLAGS.has(f.toLowerCase())).sort();
}

export function normalLabels(labels: Iterable<string> | undefined | null): string[] | null {
  return labels ? [...new Set(labels)].sort() : null;
}

/** The UID's record in the uid hash (compact JSON; one per message of the mailbox). */
export function uidRecord(seen: SeenMessage): string {
  return JSON.stringify(seen.labels ? { k: seen.key, f: seen.flags, l: seen.labels } : { k: seen.key, f: seen.flags });
}

export function parseUidRecord(raw: string | null | undefined): SeenMessage | undefined {
  if (!raw) return undefined;
  try {
    const r = JSON.parse(raw) as { k?: unknown; f?: unknown; l?: unknown };
    if (typeof r.k !== 'string' || !Array.isArray(r.f)) return undefined;
    return { key: r.k, flags: r.f as string[], labels: Array.isArray(r.l) ? r.l as string[] : null };
  } catch {
    return undefined;
  }
}

const same = (a: readonly string[] | null, b: readonly string[] | null) => (a ?? []).join('\n') === (b ?? []).join('\n');

/** Whether going from `before` to `now` is a change TRACK_CHANGES asks to hear of. */
export function isTrackedChange(before: SeenMessage, now: { flags: string[]; labels: string[] | null }, track: TrackChanges): boolean {
  return (track.flags && !same(before.flags, now.flags)) || (track.labels && now.labels !== null && !same(before.labels, now.labels));
}

const place = (at: Location) => `${at.mailbox}:${at.uidValidity}:${at.uid}`;

export function updatedKey(messageKey: string, at: Location, version: { modseq: string } | { scan: number }): string {
  return `${messageKey}#updated#${place(at)}:${'modseq' in version ? `m${version.modseq}` : `s${version.scan}`}`;
}

export const movedKey = (messageKey: string, at: Location) => `${messageKey}#moved#${place(at)}`;
export const deletedKey = (messageKey: string, at: Location) => `${messageKey}#deleted#${place(at)}`;

const base = (at: Location) => ({ v: ENTRY_VERSION as typeof ENTRY_VERSION, account: at.account, mailbox: at.mailbox, uidValidity: at.uidValidity, uid: at.uid });

export function updatedEvent(at: Location, now: SeenMessage, version: { modseq: string } | { scan: number }, observedAt: string): MessageUpdated {
  return {
    ...base(at), type: 'message.updated', key: updatedKey(now.key, at, version), messageKey: now.key, observedAt,
    flags: now.flags, ...(now.labels ? { gmail: { labels: now.labels } } : {}), modseq: 'modseq' in version ? version.modseq : null,
  };
}

export function movedEvent(at: Location, now: SeenMessage, observedAt: string): MessageMoved {
  return {
    ...base(at), type: 'message.moved', key: movedKey(now.key, at), messageKey: now.key, observedAt,
    flags: now.flags, ...(now.labels ? { gmail: { labels: now.labels } } : {}),
  };
}

export function deletedEvent(at: Location, messageKey: string, observedAt: string): MessageDeleted {
  return { ...base(at), type: 'message.deleted', key: deletedKey(messageKey, at), messageKey, observedAt };
}

/** The larger of two MODSEQs (decimal strings up to 63 bits, beyond a JavaScript number's exact range). */
export function maxModseq(a: string | null | undefined, b: string | null | undefined): string | null {
  if (!a) return b ?? null;
  if (!b) return a;
  return BigInt(a) >= BigInt(b) ? a : b;
}
