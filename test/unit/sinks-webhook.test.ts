// How the webhook sink reads one HTTP answer: the status (and Retry-After) decides the outcome.
import { describe, expect, it } from 'vitest';
import { outcomeForAnswer, parseRetryAfter } from '../../src/worker/sinks/webhook.ts';

const WHERE = 'https://hooks.example.com/in';
const NOW = Date.parse('2026-03-01T12:00:00Z');

describe('webhook answers', () => {
  it('2xx is delivered, whatever the body', () => {
    for (const status of [200, 201, 202, 204, 299]) expect(outcomeForAnswer(WHERE, status, '', null, NOW)).toEqual({ status: 'delivered' });
  });

  it('408, 500 and other 5xx are retried as sink-failed', () => {
    for (const status of [408, 500, 501, 505, 599]) {
      expect(outcomeForAnswer(WHERE, status, 'oops', null, NOW)).toEqual({ status: 'retry', kind: 'sink-failed', reason: `webhook ${WHERE} answered ${status}: oops` });
    }
  });

  it('502, 503 and 504 mean the receiver is unavailable; only 503 carries a Retry-After', () => {
    expect(outcomeForAnswer(WHERE, 502, '', '30', NOW)).toEqual({ status: 'retry', kind: 'sink-unavailable', reason: `webhook ${WHERE} answered 502` });
    expect(outcomeForAnswer(WHERE, 504, '', '30', NOW)).toEqual({ status: 'retry', kind: 'sink-unavailable', reason: `webhook ${WHERE} answered 504` });
    expect(outcomeForAnswer(WHERE, 503, 'maintenance', '30', NOW)).toEqual({ status: 'retry', kind: 'sink-unavailable', retryAfterMs: 30_000, reason: `webhook ${WHERE} answered 503: maintenance` });
    expect(outcomeForAnswer(WHERE, 503, '', null, NOW)).not.toHaveProperty('retryAfterMs');
  });

  it('429 is rate limiting, with the wait the receiver asked for', () => {
    expect(outcomeForAnswer(WHERE, 429, 'slow down', '7', NOW)).toEqual({ status: 'retry', kind: 'sink-rate-limited', retryAfterMs: 7_000, reason: `webhook ${WHERE} answered 429: slow down` });
    expect(outcomeForAnswer(WHERE, 429, '', new Date(NOW + 90_000).toUTCString(), NOW)).toMatchObject({ kind: 'sink-rate-limited', retryAfterMs: 90_000 });
    expect(outcomeForAnswer(WHERE, 429, '', 'later', NOW)).not.toHaveProperty('retryAfterMs');
  });

  it('any other 4xx is permanent, with the status and the body excerpt', () => {
    for (const status of [400, 401, 403, 404, 409, 410, 413, 422]) {
      expect(outcomeForAnswer(WHERE, status, 'no such tenant', null, NOW)).toEqual({ status: 'permanent', reason: `webhook ${WHERE} refused the email with ${status}: no such tenant` });
    }
  });

  it('a redirect is not followed and is retried, saying why', () => {
    expect(outcomeForAnswer(WHERE, 302, '', null, NOW)).toMatchObject({ status: 'retry', kind: 'sink-failed', reason: expect.stringContaining('redirects are not followed') });
  });
});

describe('Retry-After', () => {
  it('reads seconds or an HTTP date; a date in the past means now', () => {
    expect(parseRetryAfter(' 5 ', NOW)).toBe(5_000);
    expect(parseRetryAfter('0', NOW)).toBe(0);
    expect(parseRetryAfter(new Date(NOW + 2_000).toUTCString(), NOW)).toBe(2_000);
    expect(parseRetryAfter(new Date(NOW - 60_000).toUTCString(), NOW)).toBe(0);
    expect(parseRetryAfter('-3', NOW)).toBeUndefined();
    expect(parseRetryAfter('', NOW)).toBeUndefined();
  });
});
