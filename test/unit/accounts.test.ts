// The accounts file: defaults and per-account values, secrets only by reference (environment or
// file, resolved for the producer alone), and configuration errors that name ACCOUNTS_FILE and
// the entry without echoing a value.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/core/errors.ts';
import { runCli } from '../helpers/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'ms-accounts-'));

function accountsFile(content: unknown, name = `accounts-${Math.random().toString(36).slice(2)}.json`): string {
  const path = join(dir, name);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

const example = {
  defaults: { host: 'imap.example.com', port: 993, auth: 'oauth2', mailboxes: ['INBOX'], oauth2: { clientId: 'client-1', clientSecret: { env: 'CLIENT_SECRET' } } },
  accounts: [
    { user: 'alice@example.com', mailboxes: ['INBOX', 'Sent'], oauth2: { tokenFile: 'tokens/alice.json' } },
    { id: 'bob', user: 'bob@example.com', auth: 'password', password: { file: 'bob.password' }, host: 'mail.bob.test', secure: false, port: 143 },
  ],
};

describe('accounts file', () => {
  it('gives each account its own settings on top of the defaults and the global ones', () => {
    writeFileSync(join(dir, 'bob.password'), 'bobs-password-1\n');
    const file = accountsFile(example);
    const config = loadConfig('producer', { ACCOUNTS_FILE: file, CLIENT_SECRET: 'the-client-secret', FETCH_BATCH_SIZE: '50' });
    expect(config.accounts.map((a) => a.id)).toEqual(['alice@example.com', 'bob']);
    const [alice, bob] = config.accounts;
    expect(alice!.imap).toMatchObject({ host: 'imap.example.com', user: 'alice@example.com', auth: 'oauth2', mailboxes: ['INBOX', 'Sent'], fetchBatchSize: 50 });
    expect(alice!.oauth2).toMatchObject({ clientId: 'client-1', clientSecret: 'the-client-secret', tokenFile: join(dir, 'tokens/alice.json') });
    expect(bob!.imap).toMatchObject({ host: 'mail.bob.test', port: 143, secure: false, auth: 'password', password: 'bobs-password-1', mailboxes: ['INBOX'] });
    expect(config.secrets).toEqual(expect.arrayContaining(['the-client-secret', 'bobs-password-1']));
  });

  it('the worker reads the account list without needing the secrets', () => {
    const config = loadConfig('worker', { ACCOUNTS_FILE: accountsFile(example), SINK_URL: 'file:///tmp/out.jsonl' });
    expect(config.accounts.map((a) => a.id)).toEqual(['alice@example.com', 'bob']);
    expect(config.accounts[1]!.imap.password).toBeUndefined();
  });

  it('without a file, the single account of IMAP_USER', () => {
    const config = loadConfig('worker', { IMAP_USER: 'solo@example.com', SINK_URL: 'file:///tmp/out.jsonl' });
    expect(config.accounts.map((a) => a.id)).toEqual(['solo@example.com']);
  });

  it('refuses inline secrets, unset references, duplicates and bad JSON, naming the entry', () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ accounts: [{ user: 'a@x.test', auth: 'password', password: 'inline-password' }] }, /accounts\[0\]\.password: secrets are given by reference/],
      [{ accounts: [{ user: 'a@x.test', oauth2: { clientId: 'id', clientSecret: { env: 'NOT_SET_ANYWHERE' } } }] }, /accounts\[0\]\.oauth2\.clientSecret: environment variable NOT_SET_ANYWHERE is not set/],
      [{ accounts: [{ user: 'a@x.test', auth: 'password' }] }, /accounts\[0\]\.password: required/],
      [{ accounts: [{ user: 'a@x.test', auth: 'password', password: { env: 'P' } }, { user: 'a@x.test', auth: 'password', password: { env: 'P' } }] }, /listed twice/],
      [{ accounts: [] }, /at least one account/],
      ['{ not json', /as JSON/],
    ];
    for (const [content, message] of cases) {
      const file = accountsFile(content);
      let error: unknown;
      try { loadConfig('producer', { ACCOUNTS_FILE: file, P: 'pass-word' }); } catch (err) { error = err; }
      expect(error, String(message)).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).setting).toBe('ACCOUNTS_FILE');
      expect((error as Error).message).toMatch(message);
      expect((error as Error).message).not.toContain('inline-password');
    }
  });

  it('the CLI exits 78 and names ACCOUNTS_FILE for an inline secret', async () => {
    const file = accountsFile({ accounts: [{ user: 'a@x.test', auth: 'password', password: 'hunter2-inline' }] });
    const r = await runCli(['producer'], { ACCOUNTS_FILE: file });
    expect(r.code).toBe(78);
    expect(r.stderr).toContain('ACCOUNTS_FILE');
    expect(r.stderr).not.toContain('hunter2-inline');
  });
});
