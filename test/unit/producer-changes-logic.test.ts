// Pure logic of change tracking, FETCH_FILTER and mailbox patterns: the records and events the
// producer makes of a difference, the search expression's parse and how it is asked of a server
// (SEARCH, or Gmail's X-GM-RAW where there is one), and which listed mailboxes a pattern takes.
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { parseSearchFilter, usesGmailRaw } from '../../src/config/search-filter.ts';
import { ConfigError } from '../../src/core/errors.ts';
import {
  deletedEvent, isTrackedChange, maxModseq, movedEvent, normalFlags, parseUidRecord, uidRecord, updatedEvent, type TrackChanges,
} from '../../src/producer/change-events.ts';
import { filterSearch, toSearchObject } from '../../src/producer/fetch-filter.ts';
import { isPattern, selectMailboxes, type ListedMailbox } from '../../src/producer/mailbox-selection.ts';

const track = (over: Partial<TrackChanges> = {}): TrackChanges => ({ flags: true, labels: true, deletes: true, scanIntervalMs: 1000, ...over });
const at = { account: 'a@example.com', mailbox: 'INBOX', uidValidity: '7', uid: 42 };
const now = '2026-03-01T10:00:00.000Z';

describe('change events', () => {
  it('compares flags as a set, leaving out \\Recent and \\Deleted', () => {
    expect(normalFlags(['\\Seen', '\\Recent', '$Label1', '\\Seen', '\\Deleted'])).toEqual(['$Label1', '\\Seen']);
    const before = { key: 'k', flags: ['\\Seen'], labels: ['Clients'] };
    expect(isTrackedChange(before, { flags: normalFlags(['\\Seen', '\\Recent']), labels: ['Clients'] }, track())).toBe(false);
    expect(isTrackedChange(before, { flags: ['\\Flagged', '\\Seen'], labels: ['Clients'] }, track())).toBe(true);
    // A label change heard only when labels are tracked, a flag change only with flags.
    expect(isTrackedChange(before, { flags: ['\\Seen'], labels: ['Receipts'] }, track({ labels: false }))).toBe(false);
    expect(isTrackedChange(before, { flags: [], labels: ['Clients'] }, track({ flags: false }))).toBe(false);
    expect(isTrackedChange(before, { flags: ['\\Seen'], labels: [] }, track({ flags: false }))).toBe(true);
  });

  it('keeps a compact record per UID and reads it back', () => {
    const seen = { key: '<a@b>', flags: ['\\Seen'], labels: null };
    expect(uidRecord(seen)).toBe('{"k":"<a@b>","f":["\\\\Seen"]}');
    expect(parseUidRecord(uidRecord(seen))).toEqual(seen);
    expect(parseUidRecord(uidRecord({ ...seen, labels: ['\\Inbox'] }))).toEqual({ ...seen, labels: ['\\Inbox'] });
    expect(parseUidRecord('not json')).toBeUndefined();
    expect(parseUidRecord(null)).toBeUndefined();
  });

  it('names each event so that a re-sent one has the same key and a later change another', () => {
    const seen = { key: '<a@b>', flags: ['\\Flagged'], labels: ['Clients'] };
    const updated = updatedEvent(at, seen, { modseq: '9007199254740993' }, now);
    expect(updated).toEqual({
      v: 3, type: 'message.updated', key: '<a@b>#updated#INBOX:7:42:m9007199254740993', messageKey: '<a@b>', account: 'a@example.com',
      mailbox: 'INBOX', uidValidity: '7', uid: 42, observedAt: now, flags: ['\\Flagged'], gmail: { labels: ['Clients'] }, modseq: '9007199254740993',
    });
    expect(updatedEvent(at, seen, { scan: 3 }, now).key).toBe('<a@b>#updated#INBOX:7:42:s3');
    expect(updatedEvent(at, seen, { scan: 4 }, now).key).not.toBe(updatedEvent(at, seen, { scan: 3 }, now).key);
    expect(deletedEvent(at, '<a@b>', now)).toMatchObject({ type: 'message.deleted', key: '<a@b>#deleted#INBOX:7:42', messageKey: '<a@b>' });
    expect(movedEvent({ ...at, mailbox: 'Archive', uid: 3 }, { ...seen, labels: null }, now)).toMatchObject({ type: 'message.moved', key: '<a@b>#moved#Archive:7:3', flags: ['\\Flagged'] });
  });

  it('compares MODSEQs beyond a JavaScript number exactly', () => {
    expect(maxModseq('9007199254740993', '9007199254740992')).toBe('9007199254740993');
    expect(maxModseq(null, '5')).toBe('5');
    expect(maxModseq('5', undefined)).toBe('5');
  });
});

describe('TRACK_CHANGES and FETCH_FILTER settings', () => {
  const base = { IMAP_USER: 'u@example.com', IMAP_AUTH: 'password', IMAP_PASSWORD: 'pw', IMAP_HOST: 'imap.example.com' };

  it('is off by default and takes any of flags, labels, deletes', () => {
    expect(loadConfig('producer', base).producer.trackChanges).toEqual({ flags: false, labels: false, deletes: false, scanIntervalMs: 300_000 });
    expect(loadConfig('producer', { ...base, TRACK_CHANGES: 'flags, deletes', TRACK_CHANGES_SCAN_MS: '5000' }).producer.trackChanges)
      .toEqual({ flags: true, labels: false, deletes: true, scanIntervalMs: 5000 });
    expect(() => loadConfig('producer', { ...base, TRACK_CHANGES: 'flags,moves' })).toThrow(/TRACK_CHANGES: .*not moves/);
  });

  it('refuses a FETCH_FILTER that is not a search expression, naming the setting', () => {
    expect(() => loadConfig('producer', { ...base, FETCH_FILTER: 'SINCE yesterday' })).toThrow(ConfigError);
    expect(() => loadConfig('producer', { ...base, FETCH_FILTER: 'FROM' })).toThrow(/FETCH_FILTER: not an IMAP SEARCH expression/);
    expect(() => loadConfig('producer', { ...base, FETCH_FILTER: 'SUBJECT "open' })).toThrow(/not closed/);
    expect(loadConfig('producer', { ...base, FETCH_FILTER: 'SINCE 1-Feb-2025' }).producer.fetchFilter).toEqual({ op: 'date', field: 'since', date: '2025-02-01' });
  });
});

describe('FETCH_FILTER at the server', () => {
  it('parses keys, NOT, OR and parentheses as RFC 3501 reads them', () => {
    expect(parseSearchFilter('SINCE 1-Jan-2025 NOT FROM "noreply@example.com" OR FLAGGED (UNSEEN LARGER 1000)')).toEqual({
      op: 'and',
      keys: [
        { op: 'date', field: 'since', date: '2025-01-01' },
        { op: 'not', key: { op: 'text', field: 'from', value: 'noreply@example.com' } },
        { op: 'or', left: { op: 'flag', name: 'flagged', set: true }, right: { op: 'and', keys: [{ op: 'flag', name: 'seen', set: false }, { op: 'size', field: 'larger', bytes: 1000 }] } },
      ],
    });
    expect(parseSearchFilter('header List-Id "<dev.example.org>"')).toEqual({ op: 'header', name: 'List-Id', value: '<dev.example.org>' });
    expect(() => parseSearchFilter('SINCE 31-Feb-2025')).toThrow(/not a date/);
    expect(() => parseSearchFilter('BOGUS')).toThrow(/unknown search key BOGUS/);
  });

  it('asks a plain server with SEARCH, Gmail with X-GM-RAW only when the expression uses it', () => {
    const plain = new Set(['IMAP4rev1', 'CONDSTORE']);
    const gmail = new Set(['IMAP4rev1', 'X-GM-EXT-1']);
    const standard = parseSearchFilter('SINCE 1-Jan-2025 NOT FROM a NOT FROM b');
    expect(filterSearch(standard, plain)).toEqual({ via: 'search', query: { since: new Date('2025-01-01T00:00:00Z'), not: { from: 'a' }, or: [{ not: { from: 'b' } }] } });
    expect(filterSearch(standard, gmail).via).toBe('search');
    const raw = parseSearchFilter('X-GM-RAW "has:attachment newer_than:1y"');
    expect(usesGmailRaw(raw)).toBe(true);
    expect(filterSearch(raw, gmail)).toEqual({ via: 'x-gm-raw', query: { gmraw: 'has:attachment newer_than:1y' } });
    expect(() => filterSearch(raw, plain)).toThrow(/FETCH_FILTER: X-GM-RAW is Gmail's search/);
    expect(toSearchObject(parseSearchFilter('UNKEYWORD $Junk OR SEEN ANSWERED'))).toEqual({ unKeyword: '$Junk', or: [{ seen: true }, { answered: true }] });
  });
});

describe('mailbox patterns', () => {
  const box = (path: string, extra: Partial<ListedMailbox> = {}): ListedMailbox => ({ path, delimiter: '/', flags: new Set(), ...extra });
  const listed = [
    box('INBOX'), box('Archive'), box('Archive/2024'), box('Archive/2024/Q1'), box('Drafts', { specialUse: '\\Drafts' }),
    box('Trash', { specialUse: '\\Trash' }), box('Spam', { specialUse: '\\Junk' }), box('Sent', { specialUse: '\\Sent' }),
    box('[Gmail]', { flags: new Set(['\\Noselect']) }), box('[Gmail]/All Mail', { specialUse: '\\All' }),
  ];

  it('* is every selectable mailbox but trash, junk and drafts', () => {
    expect(selectMailboxes(['*'], listed)).toEqual(['INBOX', 'Archive', 'Archive/2024', 'Archive/2024/Q1', 'Sent', '[Gmail]/All Mail']);
  });

  it('a pattern matches as LIST does (* crosses levels, % does not); plain names stay as they are, each once', () => {
    expect(selectMailboxes(['Archive/*'], listed)).toEqual(['Archive/2024', 'Archive/2024/Q1']);
    expect(selectMailboxes(['Archive/%'], listed)).toEqual(['Archive/2024']);
    expect(selectMailboxes(['INBOX', 'Trash', 'Archive*', 'inbox'], listed)).toEqual(['INBOX', 'Trash', 'Archive', 'Archive/2024', 'Archive/2024/Q1', 'inbox']);
    expect(selectMailboxes(['Arch%'], [box('Archive.2024', { delimiter: '.' }), box('Archive', { delimiter: '.' })])).toEqual(['Archive']);
    expect(isPattern('Archive/*')).toBe(true);
    expect(isPattern('INBOX')).toBe(false);
  });
});
