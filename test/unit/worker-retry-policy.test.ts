import { describe, expect, it } from 'vitest';
import { PermanentDeliveryError, TransientDeliveryError } from '../../src/core/errors.ts';
import { decideAfterFailure, decideOnUnfinished, parseFailureRecord, type FailureRecord, type RetrySettings } from '../../src/worker/retry-policy.ts';

const settings: RetrySettings = { maxAttempts: 4, backoff: { baseMs: 1000, maxMs: 60_000, jitter: 0 }, maxRetryAfterMs: 3_600_000 };
const context = (now: number, random = () => 0) => ({ now, consumer: 'c1', settings, random });

describe('decideAfterFailure', () => {
  it('schedules retries further apart each time, then dead-letters at MAX_ATTEMPTS', () => {
    let previous: FailureRecord | undefined;
    const delays: number[] = [];
    for (let i = 0; i < 3; i++) {
      const now = 10_000 * (i + 1);
      const d = decideAfterFailure(new Error('boom'), previous, context(now));
      if (d.kind !== 'retry') throw new Error('expected a retry');
      delays.push(d.dueAt - now);
      previous = d.record;
    }
    expect(delays).toEqual([1000, 2000, 4000]);
    const last = decideAfterFailure(new Error('boom again'), previous, context(50_000));
    expect(last).toMatchObject({ kind: 'dead-letter', reason: 'max-attempts', record: { attempts: 4, firstFailureAt: 10_000, lastFailureAt: 50_000, lastError: 'Error: boom again', consumer: 'c1' } });
  });

  it('dead-letters a permanent error on the first attempt', () => {
    expect(decideAfterFailure(new PermanentDeliveryError('410 gone'), undefined, context(1))).toMatchObject({ kind: 'dead-letter', reason: 'permanent', record: { attempts: 1 } });
    const foreign = Object.assign(new Error('from another copy'), { name: 'PermanentDeliveryError' });
    expect(decideAfterFailure(foreign, undefined, context(1)).kind).toBe('dead-letter');
  });

  it('honours Retry-After instead of the backoff, within its cap', () => {
    const d = decideAfterFailure(new TransientDeliveryError('429', { retryAfterMs: 30_000 }), undefined, context(0));
    expect(d).toMatchObject({ kind: 'retry', dueAt: 30_000 });
    const capped = decideAfterFailure(new TransientDeliveryError('429', { retryAfterMs: 10 * 3_600_000 }), undefined, context(0));
    expect(capped).toMatchObject({ kind: 'retry', dueAt: 3_600_000 });
  });

  it('jitters the delay down by at most the jitter share', () => {
    const jittered = { ...settings, backoff: { ...settings.backoff, jitter: 0.25 } };
    const low = decideAfterFailure(new Error('x'), undefined, { now: 0, consumer: 'c', settings: jittered, random: () => 1 });
    const high = decideAfterFailure(new Error('x'), undefined, { now: 0, consumer: 'c', settings: jittered, random: () => 0 });
    expect(low).toMatchObject({ dueAt: 750 });
    expect(high).toMatchObject({ dueAt: 1000 });
  });

  it('keeps error text short', () => {
    const d = decideAfterFailure(new Error('x'.repeat(5000)), undefined, context(0));
    expect(d.record.lastError.length).toBeLessThanOrEqual(1001);
  });
});

describe('parseFailureRecord', () => {
  it('reads what recordFailure stored and ignores anything else', () => {
    const record: FailureRecord = { attempts: 2, firstFailureAt: 1, lastFailureAt: 2, lastError: 'e', consumer: 'c' };
    expect(parseFailureRecord(JSON.stringify(record))).toEqual(record);
    expect(parseFailureRecord(null)).toBeUndefined();
    expect(parseFailureRecord('not json')).toBeUndefined();
    expect(parseFailureRecord('{"no":"attempts"}')).toBeUndefined();
  });
});

describe('an email left behind by dead workers', () => {
  it('is tried again up to the limit, then dead-lettered with its attempts kept', () => {
    const context = { now: 90_000, consumer: 'c2', limit: 3 };
    expect(decideOnUnfinished(1, undefined, context)).toBeUndefined();
    expect(decideOnUnfinished(3, undefined, context)).toBeUndefined();
    const earlier = { attempts: 2, firstFailureAt: 10_000, lastFailureAt: 20_000, lastError: 'Error: boom', consumer: 'c1' };
    expect(decideOnUnfinished(4, earlier, context)).toEqual({
      kind: 'dead-letter', reason: 'max-deliveries',
      record: { attempts: 2, firstFailureAt: 10_000, lastFailureAt: 90_000, consumer: 'c2', lastError: expect.stringMatching(/tried 3 times after a worker died on it.*MAX_UNFINISHED_DELIVERIES=3/) },
    });
    expect(decideOnUnfinished(4, undefined, context)?.record).toMatchObject({ attempts: 0, firstFailureAt: 90_000 });
  });
});
