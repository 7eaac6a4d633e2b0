// Circuit breakers. They share one timer (a producer holds two per account, and opossum's own two
// intervals per breaker made thousands of timer callbacks a second at 1,000 accounts), the rolling
// window still turns, and failures in a row open one whatever the window holds.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createBreaker } from '../../src/core/breaker.ts';

afterEach(() => {
  vi.useRealTimers();
});

describe('circuit breakers', () => {
  it('add no timer of their own, however many there are', () => {
    createBreaker('warm-up', async () => 1, { account: 'a' }); // the shared timer, started once
    const intervals = vi.spyOn(globalThis, 'setInterval');
    const breakers = Array.from({ length: 200 }, (_, i) => createBreaker('imap', async () => i, { account: `account-${i}` }));
    expect(intervals).not.toHaveBeenCalled();
    intervals.mockRestore();
    for (const b of breakers) b.shutdown();
  });

  it('still rolls the failure window over: old failures stop counting', async () => {
    vi.useFakeTimers();
    // A fresh module, so that its shared timer runs on the fake clock.
    vi.resetModules();
    const fresh = await import('../../src/core/breaker.ts');
    const failing = fresh.createBreaker('sink', async () => { throw new Error('down'); }, { account: '*' }, { volumeThreshold: 100 });
    for (let i = 0; i < 4; i++) await failing.fire().catch(() => undefined);
    expect(failing.stats.failures).toBe(4);
    await vi.advanceTimersByTimeAsync(11_000);
    expect(failing.stats.failures).toBe(0);
    failing.shutdown();
  });

  it('opens after failures in a row, however few fit in the window; a success in between starts the count over', async () => {
    const answers: boolean[] = [];
    const breaker = createBreaker('sink', async () => { if (!answers.shift()) throw new Error('down'); }, { account: '*' }, { volumeThreshold: 100, openAfterFailuresInARow: 3 });
    answers.push(false, false, true, false, false);
    for (let i = 0; i < 5; i++) await breaker.fire().catch(() => undefined);
    expect(breaker.closed).toBe(true);
    answers.push(false);
    await breaker.fire().catch(() => undefined);
    expect(breaker.opened).toBe(true);
    breaker.shutdown();
  });
});
