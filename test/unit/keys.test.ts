import { describe, expect, it } from 'vitest';
import { accountKeys, accountOfStream, globalKeys } from '../../src/core/keys.ts';

describe('keys', () => {
  it('builds the contract names with one hash tag per account', () => {
    const k = accountKeys('mailstream', 'user@example.com');
    expect(k.stream).toBe('mailstream:{user@example.com}:emails');
    expect(k.dlq).toBe('mailstream:{user@example.com}:dlq');
    expect(k.mailbox('INBOX')).toBe('mailstream:{user@example.com}:mailbox:INBOX');
    for (const key of [k.ingested, k.retries, k.failures, k.fence, k.delivered('x'), k.lease('INBOX')]) {
      expect(key.match(/\{[^}]*\}/)?.[0]).toBe('{user@example.com}');
    }
    expect(globalKeys('p').accounts).toBe('p:accounts');
  });

  it('finds the account of a stream key and rejects braces in account names', () => {
    expect(accountOfStream('ms.test', 'ms.test:{a@b.c}:emails')).toBe('a@b.c');
    expect(accountOfStream('ms', 'other:{a@b.c}:emails')).toBeUndefined();
    expect(() => accountKeys('p', 'a{b}')).toThrow(/may not contain/);
  });
});
