// The logical backup file: gzip'd JSON lines. A header, then one record per key (a stream's
// entries follow its record in chunks, so a large stream never becomes one huge line), then an
// end record with counts, so a truncated file is caught before anything is restored.
import { z } from 'zod';

export const BACKUP_FORMAT = 'mailstream-backup';
export const BACKUP_VERSION = 1;

const streamId = z.string().regex(/^\d+-\d+$/, 'expected a stream ID like 1700000000000-0');
/** Remaining time to live in ms when exported; null: the key does not expire. */
const ttlMs = z.number().int().positive().nullable();

export const headerRecord = z.object({
  t: z.literal('header'),
  format: z.literal(BACKUP_FORMAT),
  version: z.literal(BACKUP_VERSION),
  prefix: z.string().min(1),
  createdAt: z.string(),
  redisVersion: z.string(),
});

export const pendingEntry = z.object({
  id: streamId,
  consumer: z.string(),
  idleMs: z.number().int().nonnegative(),
  deliveries: z.number().int().nonnegative(),
});

export const groupRecord = z.object({
  name: z.string().min(1),
  lastDeliveredId: streamId,
  entriesRead: z.number().int().nonnegative().nullable(),
  consumers: z.array(z.string()),
  pending: z.array(pendingEntry),
});

export const streamRecord = z.object({
  t: z.literal('stream'),
  key: z.string().min(1),
  ttlMs,
  lastGeneratedId: streamId,
  entriesAdded: z.number().int().nonnegative().nullable(),
  maxDeletedId: streamId.nullable(),
  length: z.number().int().nonnegative(),
  groups: z.array(groupRecord),
});

/** A chunk of one stream's entries, in ID order: [id, [field, value, ...]]. */
export const entriesRecord = z.object({
  t: z.literal('entries'),
  key: z.string().min(1),
  entries: z.array(z.tuple([streamId, z.array(z.string())])),
});

export const stringRecord = z.object({ t: z.literal('string'), key: z.string().min(1), ttlMs, value: z.string() });
export const hashRecord = z.object({ t: z.literal('hash'), key: z.string().min(1), ttlMs, value: z.record(z.string(), z.string()) });
export const setRecord = z.object({ t: z.literal('set'), key: z.string().min(1), ttlMs, value: z.array(z.string()) });
export const listRecord = z.object({ t: z.literal('list'), key: z.string().min(1), ttlMs, value: z.array(z.string()) });
/** Members with their scores as Redis prints them (keeps inf and full precision). */
export const zsetRecord = z.object({ t: z.literal('zset'), key: z.string().min(1), ttlMs, value: z.array(z.tuple([z.string(), z.string()])) });

export const endRecord = z.object({
  t: z.literal('end'),
  keys: z.number().int().nonnegative(),
  streamEntries: z.number().int().nonnegative(),
});

export const keyRecord = z.discriminatedUnion('t', [streamRecord, stringRecord, hashRecord, setRecord, listRecord, zsetRecord]);
export const bodyRecord = z.discriminatedUnion('t', [streamRecord, entriesRecord, stringRecord, hashRecord, setRecord, listRecord, zsetRecord, endRecord]);

export type HeaderRecord = z.infer<typeof headerRecord>;
export type StreamRecord = z.infer<typeof streamRecord>;
export type GroupRecord = z.infer<typeof groupRecord>;
export type PendingEntry = z.infer<typeof pendingEntry>;
export type EntriesRecord = z.infer<typeof entriesRecord>;
export type KeyRecord = z.infer<typeof keyRecord>;
export type BodyRecord = z.infer<typeof bodyRecord>;
export type EndRecord = z.infer<typeof endRecord>;

/**
 * `20261125T190411123Z`: sorts by time as text, safe in file names. Milliseconds included, so two
 * backups in one second (a cron job and a hand-run one) do not overwrite each other.
 */
export function fileTimestamp(date = new Date()): string {
  return date.toISOString().replace(/[-:.]/g, '');
}
