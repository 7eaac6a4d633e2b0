// OAUTH2_PROVIDER fills in the endpoints, scope and IMAP host (Google by default, Microsoft's
// identity platform with a tenant); explicit settings win; `custom` must be given them; the
// accounts file picks a provider per account.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { ConfigError } from '../../src/core/errors.ts';
import { accountFromConfig } from '../../src/producer/account.ts';
import { runCli } from '../helpers/cli.ts';

const client = { IMAP_USER: 'user@example.com', OAUTH2_CLIENT_ID: 'id', OAUTH2_CLIENT_SECRET: 'client-secret-value' };

function configError(run: () => unknown): ConfigError {
  try { run(); } catch (err) { if (err instanceof ConfigError) return err; throw err; }
  throw new Error('no ConfigError');
}

describe('OAUTH2_PROVIDER', () => {
  it('google by default: Gmail\'s host, Google\'s endpoints and scope', () => {
    const { imap, oauth2 } = loadConfig('producer', client);
    expect(imap.host).toBe('imap.gmail.com');
    expect(oauth2).toMatchObject({
      provider: 'google', tokenUrl: 'https://oauth2.googleapis.com/token', authUrl: 'https://accounts.google.com/o/oauth2/v2/auth',
      revokeUrl: 'https://oauth2.googleapis.com/revoke', scope: 'https://mail.google.com/',
    });
  });

  it('microsoft: the identity platform\'s v2.0 endpoints for the tenant, the IMAP scope with offline access, Outlook\'s host, no revocation', () => {
    const common = loadConfig('producer', { ...client, OAUTH2_PROVIDER: 'microsoft' });
    expect(common.imap.host).toBe('outlook.office365.com');
    expect(common.oauth2).toMatchObject({
      provider: 'microsoft', tenant: 'common',
      tokenUrl: 'https://login.microsoftonline.com/common/oauth2/v2.0/token',
      authUrl: 'https://login.microsoftonline.com/common/oauth2/v2.0/authorize',
      scope: 'https://outlook.office.com/IMAP.AccessAsUser.All offline_access',
      revokeUrl: undefined,
    });
    const tenant = loadConfig('producer', { ...client, OAUTH2_PROVIDER: 'microsoft', OAUTH2_TENANT: 'contoso.onmicrosoft.com' });
    expect(tenant.oauth2.tokenUrl).toBe('https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token');
    expect(accountFromConfig({ id: 'user@example.com', imap: tenant.imap, oauth2: tenant.oauth2 }).auth).toMatchObject({ kind: 'oauth2', provider: 'microsoft', scope: 'https://outlook.office.com/IMAP.AccessAsUser.All offline_access' });
  });

  it('explicit settings win over the preset', () => {
    const { imap, oauth2 } = loadConfig('producer', { ...client, OAUTH2_PROVIDER: 'microsoft', IMAP_HOST: 'imap.proxy.test', OAUTH2_TOKEN_URL: 'http://127.0.0.1:9/token', OAUTH2_SCOPE: 'a b' });
    expect(imap.host).toBe('imap.proxy.test');
    expect(oauth2).toMatchObject({ tokenUrl: 'http://127.0.0.1:9/token', scope: 'a b', authUrl: 'https://login.microsoftonline.com/common/oauth2/v2.0/authorize' });
  });

  it('custom: the producer needs IMAP_HOST, OAUTH2_TOKEN_URL and OAUTH2_SCOPE, each named when missing', () => {
    const full = { ...client, OAUTH2_PROVIDER: 'custom', IMAP_HOST: 'imap.example.org', OAUTH2_TOKEN_URL: 'https://id.example.org/token', OAUTH2_SCOPE: 'mail' };
    expect(loadConfig('producer', full).oauth2).toMatchObject({ tokenUrl: 'https://id.example.org/token', authUrl: '', revokeUrl: undefined });
    for (const name of ['IMAP_HOST', 'OAUTH2_TOKEN_URL', 'OAUTH2_SCOPE'] as const) {
      const err = configError(() => loadConfig('producer', { ...full, [name]: undefined }));
      expect(err.setting).toBe(name);
      expect(err.message).toMatch(/required when OAUTH2_PROVIDER=custom/);
    }
    // A password login needs the host only.
    expect(loadConfig('producer', { IMAP_USER: 'u@example.org', IMAP_AUTH: 'password', IMAP_PASSWORD: 'pw', OAUTH2_PROVIDER: 'custom', IMAP_HOST: 'imap.example.org' }).imap.host).toBe('imap.example.org');
  });

  it('rejects an unknown provider, a malformed tenant, and a service account with microsoft (exit 78, naming the setting)', async () => {
    for (const [name, env] of [
      ['OAUTH2_PROVIDER', { OAUTH2_PROVIDER: 'yahoo' }],
      ['OAUTH2_TENANT', { OAUTH2_PROVIDER: 'microsoft', OAUTH2_TENANT: 'not/a tenant' }],
    ] as const) {
      const r = await runCli(['producer'], { ...client, ...env });
      expect(r.code, name).toBe(78);
      expect(r.stderr, name).toContain(name);
    }
    const keyFile = join(mkdtempSync(join(tmpdir(), 'ms-sa-')), 'key.json');
    writeFileSync(keyFile, '{}');
    expect(configError(() => loadConfig('producer', { IMAP_USER: 'u@example.com', OAUTH2_PROVIDER: 'microsoft', OAUTH2_SERVICE_ACCOUNT_FILE: keyFile })).setting).toBe('OAUTH2_SERVICE_ACCOUNT_FILE');
  });
});

describe('the accounts file picks a provider per account', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ms-providers-'));
  const file = (content: unknown) => {
    const path = join(dir, `accounts-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(path, JSON.stringify(content));
    return path;
  };

  it('Gmail and Microsoft 365 accounts side by side; the environment\'s explicit endpoints stay with OAUTH2_PROVIDER\'s accounts', () => {
    const accounts = file({
      defaults: { auth: 'oauth2', oauth2: { clientId: 'client-1', clientSecret: { env: 'SECRET' } } },
      accounts: [
        { user: 'a@gmail.example' },
        { user: 'b@contoso.example', provider: 'microsoft', tenant: 'contoso.example' },
        { user: 'c@fabrikam.example', provider: 'microsoft', oauth2: { tokenUrl: 'http://127.0.0.1:9/token' } },
      ],
    });
    const config = loadConfig('producer', { ACCOUNTS_FILE: accounts, SECRET: 'the-secret', OAUTH2_TOKEN_URL: 'http://127.0.0.1:8/google-proxy/token' });
    const [gmail, contoso, fabrikam] = config.accounts;
    expect(gmail!.imap.host).toBe('imap.gmail.com');
    expect(gmail!.oauth2).toMatchObject({ provider: 'google', tokenUrl: 'http://127.0.0.1:8/google-proxy/token', scope: 'https://mail.google.com/' });
    expect(contoso!.imap.host).toBe('outlook.office365.com');
    expect(contoso!.oauth2).toMatchObject({ provider: 'microsoft', tokenUrl: 'https://login.microsoftonline.com/contoso.example/oauth2/v2.0/token', revokeUrl: undefined });
    expect(fabrikam!.oauth2).toMatchObject({ provider: 'microsoft', tenant: 'common', tokenUrl: 'http://127.0.0.1:9/token', authUrl: 'https://login.microsoftonline.com/common/oauth2/v2.0/authorize' });
  });

  it('a custom account must name its endpoints and host in the file', () => {
    const accounts = file({ accounts: [{ user: 'd@example.org', provider: 'custom', oauth2: { clientId: 'c', clientSecret: { env: 'SECRET' }, tokenUrl: 'https://id.example.org/token', scope: 'mail' } }] });
    const err = configError(() => loadConfig('producer', { ACCOUNTS_FILE: accounts, SECRET: 'the-secret' }));
    expect(err.setting).toBe('ACCOUNTS_FILE');
    expect(err.message).toMatch(/accounts\[0\]\.host: required when provider is custom/);
  });
});
