import { describe, expect, it } from 'vitest';
import { accountKeys, accountOfStream, globalKeys } from '../../src/core/keys.ts';

describe('keys', () => {
  it('builds the contract names with one hash tag per account', () => {
    const k = accountKeys('mailstream', 'user@example.com');
    expect(k.stream).toBe('mailstream:{user@example.com}:emails');
    expect(k.dlq).toBe('mailstream:{user@example.com}:dlq');
    expect(k.mailbox('INBOX')).toBe('mailstream:{user@example.com}:mailbox:INBOX');
    const g = k.group('workers');
    for (const key of [k.ingested, g.retries, g.failures, g.handouts, k.fence, g.delivered('x'), k.lease('INBOX')]) {
      expect(key.match(/\{[^}]*\}/)?.[0]).toBe('{user@example.com}');
    }
    // Each consumer group (each sink) keeps its own markers and retries.
    expect(g.delivered('<a@b>')).toBe('mailstream:{user@example.com}:group:workers:d:<a@b>');
    expect(k.group('archive').delivered('<a@b>')).not.toBe(g.delivered('<a@b>'));
    expect(k.group('archive').retries).not.toBe(g.retries);
    expect(globalKeys('p').accounts).toBe('p:accounts');
  });

  it('finds the account of a stream key and rejects braces in account names', () => {
    expect(accountOfStream('ms.test', 'ms.test:{a@b.c}:emails')).toBe('a@b.c');
    expect(accountOfStream('ms', 'other:{a@b.c}:emails')).toBeUndefined();
    expect(() => accountKeys('p', 'a{b}')).toThrow(/may not contain/);
  });
});
