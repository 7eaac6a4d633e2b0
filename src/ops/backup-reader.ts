// Reads and validates a logical backup file line by line. A restore reads it twice: once to
// validate everything (a damaged file changes nothing), once to apply it.
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { createGunzip } from 'node:zlib';
import { MailstreamError } from '../core/errors.ts';
import { bodyRecord, headerRecord, type BodyRecord, type EndRecord, type HeaderRecord } from './backup-format.ts';

export class BackupFileError extends MailstreamError {
  constructor(file: string, problem: string) {
    super('ERR_BACKUP_FILE', `${file}: ${problem}`);
  }
}

export interface BackupContents {
  header: HeaderRecord;
  end: EndRecord;
  keys: number;
  streams: number;
  streamEntries: number;
  groups: number;
  pendingEntries: number;
  byType: Record<string, number>;
}

/** Every line after the header, parsed and checked; throws BackupFileError on the first problem. */
export async function* readBackup(file: string): AsyncGenerator<HeaderRecord | BodyRecord> {
  const source = createReadStream(file);
  const input = source.pipe(createGunzip());
  // pipe() does not pass the file's errors on (a missing file would be an unhandled 'error').
  source.once('error', (err) => input.destroy(err));
  const lines = createInterface({ input, crlfDelay: Infinity });
  let lineNo = 0;
  try {
    for await (const line of lines) {
      lineNo += 1;
      if (line === '') continue;
      let json: unknown;
      try { json = JSON.parse(line); } catch { throw new BackupFileError(file, `line ${lineNo} is not JSON`); }
      const schema = lineNo === 1 ? headerRecord : bodyRecord;
      const parsed = schema.safeParse(json);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw new BackupFileError(file, `line ${lineNo}: ${issue?.path.join('.') || 'record'}: ${issue?.message ?? 'invalid'}${lineNo === 1 ? ' (not a mailstream backup?)' : ''}`);
      }
      yield parsed.data;
    }
  } catch (err) {
    if (err instanceof BackupFileError) throw err;
    throw new BackupFileError(file, `cannot be read: ${(err as Error).message}`);
  } finally {
    lines.close();
    source.destroy();
    input.destroy();
  }
}

/** Validates the whole file: schema, key prefix, entry order, counts against the end record. */
export async function inspectBackup(file: string): Promise<BackupContents> {
  let header: HeaderRecord | undefined;
  let end: EndRecord | undefined;
  const contents = { keys: 0, streams: 0, streamEntries: 0, groups: 0, pendingEntries: 0, byType: {} as Record<string, number> };
  const seen = new Set<string>();
  const lastIdOf = new Map<string, string>();
  for await (const record of readBackup(file)) {
    if (record.t === 'header') { header = record; continue; }
    if (!header) throw new BackupFileError(file, 'no header');
    if (end) throw new BackupFileError(file, 'records after the end record');
    if (record.t === 'end') { end = record; continue; }
    if (!record.key.startsWith(`${header.prefix}:`)) throw new BackupFileError(file, `key ${record.key} is not under the prefix ${header.prefix}`);
    if (record.t === 'entries') {
      if (!lastIdOf.has(record.key)) throw new BackupFileError(file, `entries of ${record.key} before its stream record`);
      let last = lastIdOf.get(record.key)!;
      for (const [id] of record.entries) {
        if (compareIds(id, last) <= 0) throw new BackupFileError(file, `entry ${id} of ${record.key} is out of order`);
        last = id;
      }
      lastIdOf.set(record.key, last);
      contents.streamEntries += record.entries.length;
      continue;
    }
    if (seen.has(record.key)) throw new BackupFileError(file, `key ${record.key} appears twice`);
    seen.add(record.key);
    contents.keys += 1;
    contents.byType[record.t] = (contents.byType[record.t] ?? 0) + 1;
    if (record.t === 'stream') {
      lastIdOf.set(record.key, '0-0');
      contents.streams += 1;
      contents.groups += record.groups.length;
      contents.pendingEntries += record.groups.reduce((n, g) => n + g.pending.length, 0);
    }
  }
  if (!header) throw new BackupFileError(file, 'empty file');
  if (!end) throw new BackupFileError(file, 'no end record: the file is truncated (backup interrupted or copied while written?)');
  if (end.keys !== contents.keys || end.streamEntries !== contents.streamEntries) {
    throw new BackupFileError(file, `counts do not match the end record (${contents.keys} keys / ${contents.streamEntries} entries read, ${end.keys} / ${end.streamEntries} written)`);
  }
  return { header, end, ...contents };
}

/** Orders stream IDs `ms-seq` numerically. */
export function compareIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(BigInt) as [bigint, bigint];
  const [bm, bs] = b.split('-').map(BigInt) as [bigint, bigint];
  return am < bm ? -1 : am > bm ? 1 : as < bs ? -1 : as > bs ? 1 : 0;
}
