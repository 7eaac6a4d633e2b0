// The login pacer (token bucket), the per-host slots and the full-jitter reconnect wait as pure
// logic: time comes from a fake clock, randomness from the test.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConnectPacer, ConnectStoppedError, TokenBucket, connectBurst } from '../../src/producer/connect-pacer.ts';
import { HostSlots } from '../../src/producer/connect-slots.ts';
import { waitAfterFailure, type WaitPolicy } from '../../src/producer/reconnect-wait.ts';

afterEach(() => { vi.useRealTimers(); });

describe('TokenBucket', () => {
  it('gives a burst at once, then one token per 1/rate seconds', () => {
    const bucket = new TokenBucket(5, 2, 0);
    expect([bucket.take(0), bucket.take(0)]).toEqual([0, 0]);
    expect(bucket.take(0)).toBe(200);
    expect(bucket.take(100)).toBe(100);
    expect(bucket.take(200)).toBe(0);
    expect(bucket.take(200)).toBe(200);
  });

  it('saves up no more than the burst, and a clock stepping back takes nothing away', () => {
    const bucket = new TokenBucket(10, 3, 0);
    for (let i = 0; i < 3; i++) bucket.take(0);
    const after = [0, 0, 0, 0].map(() => bucket.take(60_000));
    expect(after).toEqual([0, 0, 0, 100]);
    expect(bucket.take(59_000)).toBe(100);
  });

  it('a small burst whatever the rate', () => {
    expect([0.5, 1, 3, 10, 1000].map(connectBurst)).toEqual([1, 1, 3, 5, 5]);
  });
});

describe('ConnectPacer', () => {
  it('never lets more than burst + rate x window through in any window, in order of arrival', async () => {
    vi.useFakeTimers({ now: 0 });
    const pacer = new ConnectPacer(5, { now: () => Date.now() });
    const granted: Array<{ id: number; at: number }> = [];
    const all = Array.from({ length: 30 }, (_, id) => pacer.acquire().then(() => granted.push({ id, at: Date.now() })));
    await vi.runAllTimersAsync();
    await Promise.all(all);
    expect(granted.map((g) => g.id)).toEqual(Array.from({ length: 30 }, (_, i) => i));
    for (const window of [200, 1000, 3000]) {
      for (const first of granted) {
        const inWindow = granted.filter((g) => g.at >= first.at && g.at < first.at + window).length;
        expect(inWindow).toBeLessThanOrEqual(pacer.burst + (5 * window) / 1000);
      }
    }
    // 30 logins at 5/s with a burst of 5: the last starts 5 s in.
    expect(granted.at(-1)!.at).toBe(5000);
  });

  it('a stopped caller leaves the line and is told so; close rejects whoever waits', async () => {
    vi.useFakeTimers({ now: 0 });
    const waiting: number[] = [];
    const pacer = new ConnectPacer(1, { now: () => Date.now(), onWaiting: (n) => waiting.push(n) });
    await pacer.acquire();
    const stop = new AbortController();
    const first = pacer.acquire(stop.signal);
    const second = pacer.acquire();
    expect(pacer.waiting).toBe(2);
    stop.abort();
    await expect(first).rejects.toBeInstanceOf(ConnectStoppedError);
    expect(pacer.waiting).toBe(1);
    await vi.advanceTimersByTimeAsync(1000);
    await second;
    const third = pacer.acquire();
    pacer.close();
    await expect(third).rejects.toBeInstanceOf(ConnectStoppedError);
    expect(waiting.at(-1)).toBe(0);
  });
});

describe('HostSlots', () => {
  it('past the cap a mailbox waits, the longest holder is asked for its turn, and the slot passes in order', async () => {
    const slots = new HostSlots('imap.example.com', 2);
    const asked: string[] = [];
    const a = (await slots.acquire(() => asked.push('a')))!;
    const b = (await slots.acquire(() => asked.push('b')))!;
    expect(slots.full).toBe(true);
    let cGot = false;
    const c = slots.acquire(() => asked.push('c')).then((s) => { cGot = true; return s!; });
    const d = slots.acquire(() => asked.push('d'));
    expect(asked).toEqual(['a', 'b']);
    expect(slots.waiting).toBe(2);
    b.release();
    b.release(); // twice is once
    const cSlot = await c;
    expect(cGot).toBe(true);
    expect(slots.open).toBe(2);
    expect(slots.waiting).toBe(1);
    a.release();
    const dSlot = (await d)!;
    expect(slots.waiting).toBe(0);
    expect([cSlot.wanted, dSlot.wanted]).toEqual([false, false]);
  });

  it('a holder asked for a waiter that then stopped is no longer wanted (it hands over to nobody)', async () => {
    const slots = new HostSlots('h', 1);
    const holder = (await slots.acquire(() => undefined))!;
    const stop = new AbortController();
    const waiting = slots.acquire(() => undefined, stop.signal);
    expect(holder.wanted).toBe(true);
    stop.abort();
    expect(await waiting).toBeUndefined();
    expect(holder.wanted).toBe(false);
  });

  it('a stopped waiter leaves the line; no cap never waits', async () => {
    const capped = new HostSlots('h', 1);
    await capped.acquire(() => undefined);
    const stop = new AbortController();
    const waiting = capped.acquire(() => undefined, stop.signal);
    stop.abort();
    expect(await waiting).toBeUndefined();
    expect(capped.waiting).toBe(0);
    const open = new HostSlots('h', 0);
    for (let i = 0; i < 100; i++) await open.acquire(() => undefined);
    expect([open.open, open.full]).toEqual([100, false]);
  });
});

describe('reconnect after a dropped connection', () => {
  const policy: WaitPolicy = { reconnectBaseMs: 1000, reconnectMaxMs: 60_000, throttledWaitMs: 60_000, throttledMaxWaitMs: 1_800_000, overQuotaWaitMs: 3_600_000 };

  it('waits with full jitter: anywhere from 0 to the backoff, so a restart does not bring every mailbox back at once', () => {
    expect(waitAfterFailure('imap-connection', 3, policy, () => 0)).toBe(4000);
    expect(waitAfterFailure('imap-connection', 3, policy, () => 0.5)).toBe(2000);
    expect(waitAfterFailure('imap-connection', 3, policy, () => 0.999)).toBe(4);
    // A thousand mailboxes dropped at once spread over the whole interval.
    const waits = Array.from({ length: 1000 }, (_, i) => waitAfterFailure('imap-connection', 1, policy, () => i / 1000));
    expect(Math.min(...waits)).toBeLessThan(10);
    expect(Math.max(...waits)).toBe(1000);
  });
});

describe('operators see the pacing', () => {
  it('the dashboard charts logins started and waiting, both exported by the code', async () => {
    const { readFileSync } = await import('node:fs');
    const { createMetrics } = await import('../../src/core/metrics.ts');
    const dashboard = readFileSync(new URL('../../grafana/mailstream.json', import.meta.url), 'utf8');
    const exported = (await createMetrics('producer').registry.getMetricsAsJSON()).map((m) => m.name);
    for (const name of ['mailstream_imap_connects_total', 'mailstream_imap_connect_waiting']) {
      expect(dashboard).toContain(name);
      expect(exported).toContain(name);
    }
  });
});
