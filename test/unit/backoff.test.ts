import { describe, expect, it } from 'vitest';
import { Backoff, backoffDelay } from '../../src/core/backoff.ts';

describe('backoffDelay', () => {
  const policy = { baseMs: 100, maxMs: 5_000 };

  it('doubles from the base and stops at the cap (no jitter at random()=0)', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 30].map((n) => backoffDelay(n, policy, () => 0))).toEqual([100, 200, 400, 800, 1600, 3200, 5000, 5000]);
  });

  it('jitters down by at most the jitter share', () => {
    expect(backoffDelay(3, policy, () => 0.999999)).toBe(200);
    expect(backoffDelay(3, { ...policy, jitter: 1 }, () => 0.5)).toBe(200);
    expect(backoffDelay(3, { ...policy, jitter: 0 }, () => 0.9)).toBe(400);
  });

  it('never overflows for huge attempt counts', () => {
    expect(backoffDelay(10_000, policy, () => 0)).toBe(5_000);
  });
});

describe('Backoff', () => {
  it('grows with consecutive failures and starts over after reset', () => {
    const b = new Backoff({ baseMs: 10, maxMs: 1_000, jitter: 0 });
    expect([b.next(), b.next(), b.next()]).toEqual([10, 20, 40]);
    expect(b.attempts).toBe(3);
    b.reset();
    expect(b.next()).toBe(10);
  });
});
