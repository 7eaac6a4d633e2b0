// The module sink's rules as pure functions: which exports make a handler module, what a throw
// means, and how a handleBatch answer becomes one outcome per email.
import { describe, expect, it } from 'vitest';
import { PermanentDeliveryError, TransientDeliveryError } from '../../src/core/errors.ts';
import { moduleFunctions, outcomeOfThrow, outcomesOfBatch, REASON_MAX_CHARS } from '../../src/worker/sinks/module-contract.ts';

const fn = () => undefined;

describe('module exports', () => {
  it('accepts handle, handleBatch or both, with optional init and close', () => {
    expect(moduleFunctions({ handle: fn })).toEqual({ functions: { handle: fn } });
    expect(moduleFunctions({ handleBatch: fn, init: fn, close: fn })).toEqual({ functions: { handleBatch: fn, init: fn, close: fn } });
    expect(moduleFunctions({ handle: fn, handleBatch: fn, other: 1 })).toEqual({ functions: { handle: fn, handleBatch: fn } });
  });

  it('takes the functions from a default export object, keeping it as `this`', () => {
    const handler = { prefix: 'p', handle(this: { prefix: string }) { return this.prefix; } };
    const checked = moduleFunctions({ default: handler });
    expect('functions' in checked && (checked.functions.handle as () => string)()).toBe('p');
  });

  it('says exactly what is missing or wrong', () => {
    expect(moduleFunctions({ nothing: 1 })).toEqual({ problem: 'it exports neither handle(email, ctx) nor handleBatch(emails, ctx) (its exports: nothing)' });
    expect(moduleFunctions({})).toEqual({ problem: 'it exports neither handle(email, ctx) nor handleBatch(emails, ctx) (its exports: none)' });
    expect(moduleFunctions({ handle: fn, init: 'yes' })).toEqual({ problem: '`init` is exported but is string, not a function' });
    expect(moduleFunctions({ handleBatch: fn, close: null })).toEqual({ problem: '`close` is exported but is null, not a function' });
    expect(moduleFunctions({ handle: {} })).toEqual({ problem: '`handle` is exported but is object, not a function' });
    expect(moduleFunctions({ init: fn })).toEqual({ problem: 'it exports neither handle(email, ctx) nor handleBatch(emails, ctx) (its exports: init)' });
  });
});

describe('a handler that throws', () => {
  it('PermanentDeliveryError, or any error marked permanent or named so, is permanent', () => {
    expect(outcomeOfThrow(new PermanentDeliveryError('no route'))).toEqual({ status: 'permanent', reason: 'no route' });
    expect(outcomeOfThrow(Object.assign(new Error('flagged'), { permanent: true }))).toEqual({ status: 'permanent', reason: 'flagged' });
    class PermanentDeliveryErrorCopy extends Error { override name = 'PermanentDeliveryError'; }
    expect(outcomeOfThrow(new PermanentDeliveryErrorCopy('from another copy'))).toEqual({ status: 'permanent', reason: 'from another copy' });
  });

  it('TransientDeliveryError keeps its kind and wait, also from another copy of the class', () => {
    expect(outcomeOfThrow(new TransientDeliveryError('db down', { kind: 'sink-unavailable', retryAfterMs: 2_000 })))
      .toEqual({ status: 'retry', reason: 'db down', kind: 'sink-unavailable', retryAfterMs: 2_000 });
    expect(outcomeOfThrow(new TransientDeliveryError('busy'))).toEqual({ status: 'retry', reason: 'busy', kind: 'sink-failed' });
    const copy = Object.assign(new Error('throttled'), { name: 'TransientDeliveryError', kind: 'sink-rate-limited', retryAfterMs: 500 });
    expect(outcomeOfThrow(copy)).toEqual({ status: 'retry', reason: 'throttled', kind: 'sink-rate-limited', retryAfterMs: 500 });
    const odd = Object.assign(new Error('odd'), { name: 'TransientDeliveryError', kind: 'sink-rejected', retryAfterMs: -1 });
    expect(outcomeOfThrow(odd)).toEqual({ status: 'retry', reason: 'odd', kind: 'sink-failed' });
  });

  it('anything else is retried as sink-failed, its kind property ignored', () => {
    expect(outcomeOfThrow(new TypeError('x is undefined'))).toEqual({ status: 'retry', reason: 'x is undefined', kind: 'sink-failed' });
    expect(outcomeOfThrow(Object.assign(new Error('own kind'), { kind: 'sink-unavailable' }))).toEqual({ status: 'retry', reason: 'own kind', kind: 'sink-failed' });
    expect(outcomeOfThrow('plain string')).toEqual({ status: 'retry', reason: 'plain string', kind: 'sink-failed' });
    expect(outcomeOfThrow(42)).toEqual({ status: 'retry', reason: 'handler threw number: 42', kind: 'sink-failed' });
    const long = outcomeOfThrow(new Error('x'.repeat(5_000)));
    expect(long.status === 'retry' && long.reason.length).toBe(REASON_MAX_CHARS + 1);
  });
});

describe('handleBatch answers', () => {
  it('takes one outcome per email, filling in what may be left out', () => {
    expect(outcomesOfBatch([
      { status: 'delivered' },
      { status: 'retry', reason: 'later', kind: 'sink-rate-limited', retryAfterMs: 1_000 },
      { status: 'retry' },
      { status: 'permanent', reason: 'bad address' },
      { status: 'permanent' },
      { status: 'retry', kind: 'nonsense', retryAfterMs: Number.NaN },
    ], 6)).toEqual([
      { status: 'delivered' },
      { status: 'retry', reason: 'later', kind: 'sink-rate-limited', retryAfterMs: 1_000 },
      { status: 'retry', reason: 'the handler asked for a retry', kind: 'sink-failed' },
      { status: 'permanent', reason: 'bad address' },
      { status: 'permanent', reason: 'the handler refused the email' },
      { status: 'retry', reason: 'the handler asked for a retry', kind: 'sink-failed' },
    ]);
  });

  it('retries an email whose outcome is malformed, and the whole batch when the answer has the wrong shape', () => {
    const [bad] = outcomesOfBatch([{ status: 'ok' }], 1);
    expect(bad).toMatchObject({ status: 'retry', kind: 'sink-failed', reason: expect.stringContaining("status 'ok'") });
    expect(outcomesOfBatch([null], 1)[0]).toMatchObject({ status: 'retry', reason: expect.stringContaining('email 0') });
    expect(outcomesOfBatch(undefined, 2)).toEqual([
      { status: 'retry', kind: 'sink-failed', reason: 'handleBatch answered undefined for 2 emails (expected an array of one outcome per email)' },
      { status: 'retry', kind: 'sink-failed', reason: 'handleBatch answered undefined for 2 emails (expected an array of one outcome per email)' },
    ]);
    expect(outcomesOfBatch([{ status: 'delivered' }], 3)).toHaveLength(3);
    expect(outcomesOfBatch([{ status: 'delivered' }], 3)[0]).toMatchObject({ status: 'retry', reason: expect.stringContaining('1 outcomes for 3 emails') });
  });
});
