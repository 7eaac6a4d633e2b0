import { describe, expect, it } from 'vitest';
import { accountKeys } from '../../src/core/keys.ts';
import { appendedAtMs, deliveredMarker, parseEntries } from '../../src/worker/entries.ts';
import { InHand } from '../../src/worker/in-hand.ts';
import { addOutcome, emptySettlement } from '../../src/worker/settlement-batch.ts';
import { errorKind, redisErrorKind, PermanentDeliveryError, TransientDeliveryError } from '../../src/core/errors.ts';
import { parseRetryAfter, signatureHeader } from '../../src/worker/sinks/webhook.ts';
import { createHmac } from 'node:crypto';

const keys = accountKeys('ms', 'user@example.com').group('workers');

describe('stream entries', () => {
  it('reads key, email and type by field name and reports entries whose payload is gone', () => {
    const parsed = parseEntries([
      ['1-0', ['email', '{"a":1}', 'key', 'k1']],
      ['2-0', null],
      ['3-0', ['key', 'k3']],
      ['4-0', ['key', 'k4#deleted#INBOX:1:4', 'email', '{"b":2}', 'type', 'message.deleted']],
      ['5-0', ['key', 'k5', 'email', '{}', 'type', 'message.unheard-of']],
    ]);
    expect(parsed.entries).toEqual([
      // Entries before version 3 carry no type: they are all new mail.
      { id: '1-0', key: 'k1', email: '{"a":1}', type: 'message.new' },
      { id: '4-0', key: 'k4#deleted#INBOX:1:4', email: '{"b":2}', type: 'message.deleted' },
      { id: '5-0', key: 'k5', email: '{}', type: 'message.new' },
    ]);
    expect(parsed.missing).toEqual(['2-0', '3-0']);
  });

  it('takes the append time from the entry id', () => {
    expect(appendedAtMs('1700000000123-7')).toBe(1700000000123);
  });

  it('keeps short keys readable in the marker and hashes long ones to a bounded size', () => {
    expect(deliveredMarker(keys, '<a@b>')).toBe(keys.delivered('<a@b>'));
    const long = `<${'x'.repeat(900)}@example.com>`;
    const marker = deliveredMarker(keys, long);
    expect(marker.length).toBeLessThan(120);
    expect(marker).toBe(deliveredMarker(keys, long));
    expect(marker).not.toBe(deliveredMarker(keys, `${long} `));
    // A key that looks like a hash is hashed too, so it cannot collide with one.
    expect(deliveredMarker(keys, 'sha256:abc')).not.toBe(keys.delivered('sha256:abc'));
  });
});

describe('webhook helpers', () => {
  it('signs the timestamp and body with HMAC-SHA256', () => {
    const header = signatureHeader('secret', '{"x":1}', 1700000000);
    expect(header).toBe(`t=1700000000,v1=${createHmac('sha256', 'secret').update('1700000000.{"x":1}').digest('hex')}`);
  });

  it('reads Retry-After as seconds or as an HTTP date', () => {
    expect(parseRetryAfter('120')).toBe(120_000);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4_000)).toBe(6_000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(null)).toBeUndefined();
  });
});

describe('InHand', () => {
  it('tells two accounts with the same entry id apart', () => {
    const held = new InHand();
    held.add('a@example.com', ['1-0']);
    held.add('b@example.com', ['1-0']);
    held.delete('a@example.com', ['1-0']);
    expect(held.has('a@example.com', '1-0')).toBe(false);
    expect(held.has('b@example.com', '1-0')).toBe(true);
  });

  it('keeps an entry held until every holder lets go', () => {
    const held = new InHand();
    held.add('a', ['1-0', '2-0']);
    held.add('a', ['1-0']);
    held.delete('a', ['1-0', '2-0']);
    expect(held.ids('a')).toEqual(['1-0']);
    held.delete('a', ['1-0']);
    expect(held.ids('a')).toEqual([]);
  });
});

describe('settlement of a batch', () => {
  const ctx = { group: 'workers', consumer: 'w1', now: 1_000_000, random: () => 0, settings: { maxAttempts: 3, backoff: { baseMs: 100, maxMs: 1000, jitter: 0 }, maxRetryAfterMs: 60_000 } };
  const entry = (n: number) => ({ id: `${n}-0`, key: `k${n}`, email: '{}' });

  it('sorts outcomes into delivered, retries (honouring Retry-After) and dead letters', () => {
    const s = emptySettlement(false);
    addOutcome(s, entry(1), { status: 'delivered' }, undefined, ctx);
    addOutcome(s, entry(2), { status: 'retry', reason: 'busy' }, undefined, ctx);
    addOutcome(s, entry(3), { status: 'retry', reason: 'slow down', kind: 'sink-rate-limited', retryAfterMs: 5_000 }, undefined, ctx);
    addOutcome(s, entry(4), { status: 'permanent', reason: 'no route' }, undefined, ctx);
    addOutcome(s, entry(5), { status: 'retry', reason: 'busy' }, { attempts: 2, firstFailureAt: 1, lastFailureAt: 2, lastError: 'x', consumer: 'w0' }, ctx);
    expect(s.delivered.map((e) => e.id)).toEqual(['1-0']);
    expect(s.retries).toEqual([
      expect.objectContaining({ id: '2-0', dueAt: 1_000_100, record: expect.objectContaining({ attempts: 1, lastError: expect.stringContaining('busy') }) }),
      expect.objectContaining({ id: '3-0', dueAt: 1_005_000 }),
    ]);
    expect(s.deadLetters.map((d) => [d.id, d.reason])).toEqual([['4-0', 'permanent'], ['5-0', 'max-attempts']]);
    const fields = s.deadLetters[1]!.fields;
    expect(fields[fields.indexOf('attempts') + 1]).toBe('3');
    expect(fields[fields.indexOf('group') + 1]).toBe('workers');
  });
});

describe('error kinds', () => {
  it('reads a Redis reply by its error code and typed errors by their kind', () => {
    const reply = (message: string) => Object.assign(new Error(message), { name: 'ReplyError' });
    expect(redisErrorKind(reply("OOM command not allowed when used memory > 'maxmemory'."))).toBe('redis-oom');
    expect(redisErrorKind(reply("READONLY You can't write against a read only replica."))).toBe('redis-readonly');
    expect(redisErrorKind(reply('LOADING Redis is loading the dataset in memory'))).toBe('redis-loading');
    expect(redisErrorKind(reply('NOGROUP No such key or consumer group'))).toBe('redis-nogroup');
    expect(redisErrorKind(reply('ERR something else mentions OOM'))).toBe('redis-error');
    expect(redisErrorKind(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toBe('redis-unavailable');
    expect(errorKind(new PermanentDeliveryError('no'))).toBe('sink-rejected');
    expect(errorKind(new TransientDeliveryError('down', { kind: 'sink-unavailable' }))).toBe('sink-unavailable');
    expect(errorKind(new Error('anything'))).toBe('unknown');
  });
});
