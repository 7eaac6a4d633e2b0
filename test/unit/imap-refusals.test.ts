// IMAP refusals are sorted by their response code, never by the text after it, and each kind gets
// its own wait: short for a dropped connection, long for throttling, an hour for a used-up quota.
import { describe, expect, it } from 'vitest';
import { AuthError, DependencyError, errorKind, imapErrorKind, imapResponseCode } from '../../src/core/errors.ts';
import { FailureStreak, waitAfterFailure, type WaitPolicy } from '../../src/producer/reconnect-wait.ts';
import { serverAnswer } from '../../src/producer/imap-connect.ts';

/** An error as imapflow raises it for a tagged NO/BAD: LOGIN copies the code, FETCH leaves it in the parsed answer. */
function refusal(code: string | undefined, text: string, options: { copied?: boolean; login?: boolean } = {}) {
  const attributes = [...(code ? [{ type: 'SECTION', section: [{ type: 'ATOM', value: code }] }] : []), { type: 'TEXT', value: text }];
  return Object.assign(new Error('Command failed'), {
    responseStatus: 'NO',
    responseText: text,
    response: options.copied === false ? { tag: 'A4', command: 'NO', attributes } : `A4 NO ${code ? `[${code}] ` : ''}${text}`,
    ...(options.copied !== false && code ? { serverResponseCode: code } : {}),
    ...(options.login ? { authenticationFailed: true } : {}),
  });
}

describe('IMAP refusals by response code', () => {
  it('reads the code whether imapflow copied it onto the error or not', () => {
    expect(imapResponseCode(refusal('OVERQUOTA', 'Account exceeded command or bandwidth limits', { copied: false }))).toBe('OVERQUOTA');
    expect(imapResponseCode(refusal('throttled', 'slow down'))).toBe('THROTTLED');
    expect(imapResponseCode(refusal(undefined, 'no code here', { copied: false }))).toBeUndefined();
  });

  it('sorts Gmail\'s answers into the table\'s kinds', () => {
    expect(imapErrorKind(refusal('THROTTLED', 'Account exceeded command or bandwidth limits', { login: true }))).toBe('imap-throttled');
    expect(imapErrorKind(refusal('ALERT', 'Too many simultaneous connections. (Failure)', { login: true }))).toBe('imap-throttled');
    expect(imapErrorKind(refusal('OVERQUOTA', 'Account exceeded command or bandwidth limits', { copied: false }))).toBe('imap-over-quota');
    expect(imapErrorKind(refusal('AUTHENTICATIONFAILED', 'Invalid credentials (Failure)', { login: true }))).toBe('imap-auth');
    expect(imapErrorKind(refusal(undefined, 'Login failed', { login: true }))).toBe('imap-auth');
    expect(imapErrorKind(refusal('UNAVAILABLE', 'Try again later', { login: true }))).toBe('imap-connection');
  });

  it('never reads the prose: words that sound like a kind do not make one', () => {
    expect(imapErrorKind(refusal(undefined, 'Too many simultaneous connections. [OVERQUOTA] THROTTLED', { copied: false }))).toBe('imap-connection');
  });

  it('knows imapflow\'s own codes, and errorKind sends IMAP failures here before it tries Redis\'s', () => {
    expect(imapErrorKind(Object.assign(new Error('throttled'), { code: 'ETHROTTLE', throttleReset: 92_415 }))).toBe('imap-throttled');
    // imapflow's errors carry a `command` as ioredis's do: still IMAP.
    expect(errorKind(Object.assign(new Error('Connection not available'), { code: 'NoConnection', command: 'FETCH' }))).toBe('imap-connection');
    expect(errorKind(refusal('OVERQUOTA', 'limit', { copied: false }))).toBe('imap-over-quota');
    expect(errorKind(new DependencyError('imap-throttled', 'refused'))).toBe('imap-throttled');
    expect(errorKind(new AuthError('refused'))).toBe('imap-auth');
  });

  it('shows the server\'s own words to people', () => {
    expect(serverAnswer(refusal('OVERQUOTA', 'Account exceeded command or bandwidth limits', { copied: false }))).toBe('NO [OVERQUOTA] Account exceeded command or bandwidth limits');
    expect(serverAnswer(Object.assign(new Error('Connection not available'), { reason: 'Session expired' }))).toBe('BYE Session expired');
  });
});

describe('waits by kind', () => {
  const policy: WaitPolicy = { reconnectBaseMs: 1000, reconnectMaxMs: 300_000, throttledWaitMs: 60_000, throttledMaxWaitMs: 1_800_000, overQuotaWaitMs: 3_600_000 };
  const none = () => 0;
  const most = () => 1;

  it('a plain failure backs off from RECONNECT_BASE_MS, throttling from IMAP_THROTTLED_WAIT_MS, both capped', () => {
    expect([1, 2, 3].map((n) => waitAfterFailure('imap-connection', n, policy, none))).toEqual([1000, 2000, 4000]);
    expect([1, 2, 3].map((n) => waitAfterFailure('imap-throttled', n, policy, none))).toEqual([60_000, 120_000, 240_000]);
    expect(waitAfterFailure('imap-throttled', 10, policy, none)).toBe(1_800_000);
    // Even with the most jitter, a first throttled wait is far longer than a first plain one.
    expect(waitAfterFailure('imap-throttled', 1, policy, most)).toBe(42_000);
  });

  it('a used-up quota waits IMAP_OVER_QUOTA_WAIT_MS at least, every time, never a tight loop', () => {
    for (const n of [1, 2, 5]) expect(waitAfterFailure('imap-over-quota', n, policy, none)).toBe(3_600_000);
    expect(waitAfterFailure('imap-over-quota', 1, policy, most)).toBe(3_960_000);
  });

  it('a UIDVALIDITY change is settled at once', () => {
    expect(waitAfterFailure('imap-uidvalidity', 3, policy, most)).toBe(0);
  });

  it('counts failures in a row per kind', () => {
    const streak = new FailureStreak(policy, none);
    expect([streak.next('imap-connection'), streak.next('imap-connection'), streak.next('imap-connection')]).toEqual([1000, 2000, 4000]);
    expect(streak.next('imap-throttled')).toBe(60_000);
    expect(streak.attempts).toBe(1);
    expect(streak.next('imap-throttled')).toBe(120_000);
    streak.reset();
    expect(streak.next('imap-throttled')).toBe(60_000);
  });
});
