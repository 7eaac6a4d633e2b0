import { describe, expect, it } from 'vitest';
import { accountKeys } from '../../src/core/keys.ts';
import { appendedAtMs, deliveredMarker, parseEntries } from '../../src/worker/entries.ts';
import { Limiter } from '../../src/worker/limiter.ts';
import { parseRetryAfter, signatureHeader } from '../../src/worker/sinks/webhook.ts';
import { createHmac } from 'node:crypto';

const keys = accountKeys('ms', 'user@example.com').group('workers');

describe('stream entries', () => {
  it('reads key and email by field name and reports entries whose payload is gone', () => {
    const parsed = parseEntries([
      ['1-0', ['email', '{"a":1}', 'key', 'k1']],
      ['2-0', null],
      ['3-0', ['key', 'k3']],
    ]);
    expect(parsed.entries).toEqual([{ id: '1-0', key: 'k1', email: '{"a":1}' }]);
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

describe('Limiter', () => {
  it('lets urgent tasks go before those already waiting', async () => {
    const limiter = new Limiter(1);
    const order: string[] = [];
    let release!: () => void;
    const first = limiter.run(() => new Promise<void>((r) => { release = r; }));
    const normal = limiter.run(async () => { order.push('normal'); });
    const urgent = limiter.run(async () => { order.push('urgent'); }, true);
    release();
    await Promise.all([first, normal, urgent]);
    expect(order).toEqual(['urgent', 'normal']);
  });

  it('never runs more tasks at once than its limit', async () => {
    const limiter = new Limiter(3);
    let running = 0;
    let peak = 0;
    const releases: Array<() => void> = [];
    const tasks = Array.from({ length: 10 }, () => limiter.run(async () => {
      running += 1;
      peak = Math.max(peak, running);
      await new Promise<void>((r) => releases.push(r));
      running -= 1;
    }));
    for (let done = 0; done < 10; done++) {
      while (releases.length === 0) await new Promise((r) => setImmediate(r));
      releases.shift()!();
    }
    await Promise.all(tasks);
    expect(peak).toBe(3);
    expect(limiter.inFlight).toBe(0);
  });
});
