// Pure pieces of the ops code: which backups retention deletes, which keys a backup leaves out,
// stream ID order, breakers as heartbeats report them, file timestamps, tables.
import { describe, expect, it } from 'vitest';
import { filesToPrune } from '../../src/ops/backup.ts';
import { fileTimestamp } from '../../src/ops/backup-format.ts';
import { compareIds } from '../../src/ops/backup-reader.ts';
import { isEphemeralKey } from '../../src/ops/ephemeral.ts';
import { globEscape } from '../../src/ops/scan.ts';
import { breakersOf } from '../../src/ops/status.ts';
import { table } from '../../src/ops/table.ts';
import type { ProcessRecord } from '../../src/core/heartbeat.ts';

describe('backup retention', () => {
  const names = [
    'mailstream-ms-20260101T000000Z.jsonl.gz', 'mailstream-ms-20260103T000000Z.jsonl.gz', 'mailstream-ms-20260102T000000Z.jsonl.gz',
    'mailstream-other-20250101T000000Z.jsonl.gz', 'redis-20260101T000000Z.rdb', 'redis-20260102T000000Z.rdb',
    'notes.txt', 'mailstream-ms-20260104T000000Z.jsonl.gz.partial',
  ];
  it('keeps the newest N exports of this prefix and the newest N RDB copies, and nothing else is touched', () => {
    expect(filesToPrune(names, 'ms', 2).sort()).toEqual(['mailstream-ms-20260101T000000Z.jsonl.gz']);
    expect(filesToPrune(names, 'ms', 1).sort()).toEqual([
      'mailstream-ms-20260101T000000Z.jsonl.gz', 'mailstream-ms-20260102T000000Z.jsonl.gz', 'redis-20260101T000000Z.rdb',
    ]);
    expect(filesToPrune(names, 'ms', 10)).toEqual([]);
  });

  it('counts exports named to the millisecond (two in one second) beside the older names', () => {
    const newer = ['mailstream-ms-20260105T000000001Z.jsonl.gz', 'mailstream-ms-20260105T000000002Z.jsonl.gz'];
    expect(filesToPrune([...names, ...newer], 'ms', 2).sort()).toEqual([
      'mailstream-ms-20260101T000000Z.jsonl.gz', 'mailstream-ms-20260102T000000Z.jsonl.gz', 'mailstream-ms-20260103T000000Z.jsonl.gz',
    ]);
  });

  it('names files by UTC time so that they sort by age', () => {
    expect(fileTimestamp(new Date('2026-11-25T19:04:11.123Z'))).toBe('20261125T190411123Z');
  });
});

describe('keys a backup leaves out', () => {
  it('heartbeats, the producer registry and mailbox leases, nothing else', () => {
    expect(isEphemeralKey('ms', 'ms:processes')).toBe(true);
    expect(isEphemeralKey('ms', 'ms:producers')).toBe(true);
    expect(isEphemeralKey('ms', 'ms:accounts')).toBe(false);
    expect(isEphemeralKey('ms', 'ms:{a@b.c}:lease:INBOX')).toBe(true);
    expect(isEphemeralKey('ms', 'ms:{a@b.c}:emails')).toBe(false);
    expect(isEphemeralKey('ms', 'ms:{a@b.c}:mailbox:lease:x')).toBe(false);
    expect(isEphemeralKey('ms', 'ms:{a@b.c}:fence')).toBe(false);
    expect(isEphemeralKey('ms', 'other:processes')).toBe(false);
  });

  it('escapes glob characters of a prefix for SCAN MATCH', () => {
    expect(globEscape('a*b?[c]\\')).toBe('a\\*b\\?\\[c\\]\\\\');
  });
});

describe('stream ID order', () => {
  it('compares milliseconds, then sequence, as numbers', () => {
    expect(compareIds('9-0', '10-0')).toBe(-1);
    expect(compareIds('10-10', '10-9')).toBe(1);
    expect(compareIds('1700000000000-3', '1700000000000-3')).toBe(0);
    expect(compareIds('18446744073709551615-0', '18446744073709551614-99')).toBe(1);
  });
});

describe('breakers from heartbeats', () => {
  const base: ProcessRecord = { id: 'p1', role: 'worker', pid: 1, host: 'h', startedAt: '', heartbeatAt: '', intervalMs: 1 };
  it('reads a map, a list, or a worker\'s single sink breaker', () => {
    expect(breakersOf({ ...base, breakers: { imap: 'open' } })).toEqual([{ process: 'p1', role: 'worker', breaker: 'imap', state: 'open' }]);
    expect(breakersOf({ ...base, breakers: [{ name: 'sink', state: 'half-open' }] })).toEqual([{ process: 'p1', role: 'worker', breaker: 'sink', state: 'half-open' }]);
    expect(breakersOf({ ...base, breaker: 'closed' })).toEqual([{ process: 'p1', role: 'worker', breaker: 'sink', state: 'closed' }]);
    expect(breakersOf(base)).toEqual([]);
  });
});

describe('tables', () => {
  it('pads columns to the widest cell and shows missing values as -', () => {
    expect(table(['a', 'long header'], [['x', null], ['wide cell', 3]])).toBe(
      'a          long header\n---------  -----------\nx          -\nwide cell  3',
    );
  });
});
