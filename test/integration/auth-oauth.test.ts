// OAuth2 through the CLI and the daemon against the local provider: consent with PKCE on a
// loopback redirect, info/refresh/revoke, an access token expiring mid-run, a revoked refresh
// token (one clear error, /ready false, retries with backoff, recovery after a new consent).
import { mkdtempSync, statSync, readFileSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { startDovecot, type Dovecot } from '../helpers/dovecot.ts';
import { startOAuthServer, type OAuthServer } from '../helpers/oauth-server.ts';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.ts';
import { generateCorpus } from '../helpers/corpus.ts';
import { runCli, startDaemon } from '../helpers/cli.ts';
import { eventually } from '../helpers/ports.ts';
import { killAllTracked, spawnTracked } from '../helpers/processes.ts';
import { producerEnv } from '../helpers/producer-env.ts';
import { metricValue } from '../helpers/stream-read.ts';
import { BIN, ROOT, baseEnv } from '../helpers/cli.ts';
import { accountKeys } from '../../src/core/keys.ts';

const USER = 'user@example.com';
let oauth: OAuthServer;
let dovecot: Dovecot;
let redisServer: RedisServer;
let redis: Redis;

beforeAll(async () => {
  oauth = await startOAuthServer();
  [dovecot, redisServer] = await Promise.all([startDovecot({ introspectionUrl: oauth.introspectUrl }), startRedisServer()]);
  redis = redisServer.client();
});

afterAll(async () => {
  redis?.disconnect();
  await dovecot?.destroy();
  await redisServer?.destroy();
  await oauth?.close();
  expect(await killAllTracked()).toBe(0);
});

function authEnv(tokenFile: string): Record<string, string> {
  return {
    IMAP_USER: USER,
    OAUTH2_CLIENT_ID: oauth.clientId,
    OAUTH2_CLIENT_SECRET: oauth.clientSecret,
    OAUTH2_TOKEN_URL: oauth.tokenUrl,
    OAUTH2_AUTH_URL: oauth.authUrl,
    OAUTH2_REVOKE_URL: oauth.revokeUrl,
    OAUTH2_TOKEN_FILE: tokenFile,
  };
}

/** Runs `auth setup`, follows the printed consent URL like a browser would, returns the exit code. */
async function consent(env: Record<string, string>, args: string[] = []): Promise<{ code: number | string; url: URL; output: string }> {
  const setup = spawnTracked(process.execPath, ['--', BIN, 'auth', 'setup', ...args], { env: baseEnv(env), cwd: ROOT });
  const url = await eventually(() => /^(http:\/\/\S+\/auth\?\S+)$/m.exec(setup.output())?.[1], { what: 'the consent URL' });
  const landing = await fetch(url); // the local provider approves and redirects to the loopback listener
  expect(landing.status).toBe(200);
  return { code: await setup.exited, url: new URL(url), output: setup.output() };
}

describe('auth commands', () => {
  it('setup: consent URL with offline access, forced consent and PKCE; token file written 0600', async () => {
    const tokenFile = join(mkdtempSync(join(tmpdir(), 'ms-auth-')), 'tokens', `${USER}.json`);
    const { code, url, output } = await consent(authEnv(tokenFile));
    expect(code).toBe(0);
    expect(url.searchParams.get('access_type')).toBe('offline');
    expect(url.searchParams.get('prompt')).toBe('consent');
    expect(url.searchParams.get('code_challenge_method')).toBe('S256');
    expect(url.searchParams.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(url.searchParams.get('redirect_uri')).toMatch(/^http:\/\/127\.0\.0\.1:\d+\//);
    expect(output).toMatch(/written to/);
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    const stored = JSON.parse(readFileSync(tokenFile, 'utf8')) as { refresh_token: string; account: string };
    expect(stored.refresh_token).toMatch(/^1\/\/refresh-/);
    expect(stored.account).toBe(USER);

    const info = await runCli(['auth', 'info', '--json'], authEnv(tokenFile));
    expect(info.code).toBe(0);
    expect(JSON.parse(info.stdout)).toMatchObject({ account: USER, hasRefreshToken: true, fileMode: '0600', scopes: ['https://mail.google.com/'] });
    expect(info.stdout).not.toContain(stored.refresh_token);

    const grants = oauth.counters.refreshGrants;
    const refreshed = await runCli(['auth', 'refresh'], authEnv(tokenFile));
    expect(refreshed.code).toBe(0);
    expect(oauth.counters.refreshGrants).toBe(grants + 1);
    expect(refreshed.stdout).not.toMatch(/ya29-/);

    const revoked = await runCli(['auth', 'revoke'], authEnv(tokenFile));
    expect(revoked.code).toBe(0);
    expect(existsSync(tokenFile)).toBe(false);
    const after = await runCli(['auth', 'refresh'], { ...authEnv(tokenFile) });
    expect(after.code).toBe(1);
    expect(after.stderr).toMatch(/auth setup/);
  });

  it('--account: setup, info and refresh for one account of ACCOUNTS_FILE, reading only its secrets', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ms-auth-accounts-'));
    const accountsFile = join(dir, 'accounts.json');
    writeFileSync(accountsFile, JSON.stringify({
      defaults: { auth: 'oauth2', oauth2: { clientId: oauth.clientId } },
      accounts: [
        // Its secret is not in this shell's environment: only the chosen account's are read.
        { user: 'legacy@example.com', auth: 'password', password: { env: 'LEGACY_PASSWORD_NOT_HERE' } },
        { user: 'sales@example.com', oauth2: { clientSecret: { env: 'SALES_CLIENT_SECRET' }, tokenFile: 'tokens/sales.json' } },
      ],
    }));
    const env = {
      ACCOUNTS_FILE: accountsFile, SALES_CLIENT_SECRET: oauth.clientSecret,
      OAUTH2_TOKEN_URL: oauth.tokenUrl, OAUTH2_AUTH_URL: oauth.authUrl, OAUTH2_REVOKE_URL: oauth.revokeUrl,
    };
    const { code, url, output } = await consent(env, ['--account', 'sales@example.com']);
    expect(code, output).toBe(0);
    expect(url.searchParams.get('login_hint')).toBe('sales@example.com');
    const tokenFile = join(dir, 'tokens', 'sales.json'); // relative to the accounts file
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(tokenFile, 'utf8'))).toMatchObject({ account: 'sales@example.com' });

    const info = await runCli(['auth', 'info', '--json', '--account', 'sales@example.com'], env);
    expect(JSON.parse(info.stdout)).toMatchObject({ account: 'sales@example.com', tokenFile, hasRefreshToken: true });
    const refreshed = await runCli(['auth', 'refresh', '--account', 'sales@example.com'], env);
    expect(refreshed.code, refreshed.stderr).toBe(0);
    expect(refreshed.stdout).not.toContain(oauth.clientSecret);

    const unknown = await runCli(['auth', 'info', '--account', 'nobody@example.com'], env);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/nobody@example\.com is not in ACCOUNTS_FILE \(accounts: legacy@example\.com, sales@example\.com\)/);
    const password = await runCli(['auth', 'setup', '--account', 'legacy@example.com'], { ...env, LEGACY_PASSWORD_NOT_HERE: 'pw' });
    expect(password.code).toBe(2);
    expect(password.stderr).toMatch(/logs in with a password/);
  });
});

describe('the producer with OAuth2', () => {
  it('an access token that expires mid-run is refreshed without an error reaching the mailbox loop', async () => {
    dovecot.seed(USER, 'Expiry', generateCorpus(3, { seed: 51, tag: 'expiry' }).map((m) => m.raw));
    const env = producerEnv({ redisUrl: redisServer.url, dovecot, oauth, mailboxes: ['Expiry'], extra: { START_FROM: 'all' } });
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);
    const daemon = startDaemon(['producer'], env);
    const url = (await daemon.waitForLog((l) => l.msg === 'health and metrics listening')).url as string;
    await eventually(async () => (await redis.xlen(keys.stream)) === 3, { what: 'the first sync' });

    // The cached token dies; the server then ends the session, as Gmail does ("BYE Session expired").
    oauth.expireAccessTokens();
    const grants = oauth.counters.refreshGrants;
    await dovecot.doveadm('kick', USER);
    await dovecot.append(USER, 'Expiry', generateCorpus(1, { seed: 52, tag: 'expiry-new' }).map((m) => m.raw));
    await eventually(async () => (await redis.xlen(keys.stream)) === 4, { what: 'mail after the re-login' });
    expect(oauth.counters.refreshGrants).toBeGreaterThan(grants);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metricValue(metrics, 'mailstream_imap_errors_total', 'mailbox="Expiry",kind="auth"')).toBeNaN();
    expect(daemon.logs().filter((l) => l.level === 'error')).toEqual([]);
    expect(await daemon.stop()).toBe(0);
  });

  it('a revoked refresh token: one clear error, /ready false, retries with backoff, recovery after a new consent', async () => {
    dovecot.seed(USER, 'Revoked', generateCorpus(2, { seed: 53, tag: 'revoked' }).map((m) => m.raw));
    const env = producerEnv({ redisUrl: redisServer.url, dovecot, oauth, mailboxes: ['Revoked'], extra: { START_FROM: 'all', RECONNECT_BASE_MS: '50', RECONNECT_MAX_MS: '200' } });
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);
    const stored = JSON.parse(readFileSync(env.OAUTH2_TOKEN_FILE!, 'utf8')) as { refresh_token: string };
    oauth.revokeRefreshToken(stored.refresh_token);
    const daemon = startDaemon(['producer'], env);
    const url = (await daemon.waitForLog((l) => l.msg === 'health and metrics listening')).url as string;

    // Before the first refusal /ready says "not logged in"; from then on, until a login works, it
    // names the refusal, through every retry.
    await eventually(async () => {
      const res = await fetch(`${url}/ready`);
      return res.status === 503 && /authentication failed.*auth setup/.test(((await res.json()) as { reasons: string[] }).reasons.join(' '));
    }, { what: '/ready 503 naming the refused token' });
    await eventually(async () => metricValue(await (await fetch(`${url}/metrics`)).text(), 'mailstream_imap_errors_total', 'mailbox="Revoked",kind="auth"') >= 3, { what: 'retries' });
    const during = await fetch(`${url}/ready`);
    expect(during.status).toBe(503);
    expect(((await during.json()) as { reasons: string[] }).reasons.join(' ')).toMatch(/authentication failed.*auth setup/);
    const errors = daemon.logs().filter((l) => l.level === 'error');
    expect(errors).toHaveLength(1);
    expect(JSON.stringify(errors[0])).toMatch(/refresh token refused.*auth setup/);
    expect(daemon.output()).not.toContain(stored.refresh_token);

    // The operator consents again (here: a new refresh token in the file); the next retry works.
    writeFileSync(env.OAUTH2_TOKEN_FILE!, JSON.stringify({ refresh_token: oauth.issueRefreshToken(USER) }), { mode: 0o600 });
    await eventually(async () => (await redis.xlen(keys.stream)) === 2, { what: 'recovery' });
    await eventually(async () => (await fetch(`${url}/ready`)).status === 200, { what: '/ready 200' });
    expect(await daemon.stop()).toBe(0);
  });
  it('a Workspace service account (domain-wide delegation) logs in as the user; a withdrawn delegation is one clear error', async () => {
    dovecot.seed(USER, 'Delegated', generateCorpus(3, { seed: 55, tag: 'delegated' }).map((m) => m.raw));
    const keyFile = oauth.writeServiceAccountKey(join(mkdtempSync(join(tmpdir(), 'ms-sa-')), 'service-account.json'));
    const env = producerEnv({ redisUrl: redisServer.url, dovecot, oauth, mailboxes: ['Delegated'], extra: { START_FROM: 'all', OAUTH2_SERVICE_ACCOUNT_FILE: keyFile, RECONNECT_BASE_MS: '50', RECONNECT_MAX_MS: '200' } });
    // No client, secret or refresh token: the signed grant of the key file is all it takes.
    delete env.OAUTH2_CLIENT_ID;
    delete env.OAUTH2_CLIENT_SECRET;
    delete env.OAUTH2_TOKEN_FILE;
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);
    const before = { jwt: oauth.counters.jwtGrants, refresh: oauth.counters.refreshGrants };
    const daemon = startDaemon(['producer'], env);
    await eventually(async () => (await redis.xlen(keys.stream)) === 3, { what: 'the delegated mailbox' });
    expect(oauth.counters.jwtGrants).toBeGreaterThan(before.jwt);
    expect(oauth.counters.refreshGrants).toBe(before.refresh);
    expect(await daemon.stop()).toBe(0);
    expect(daemon.output()).not.toContain('PRIVATE KEY');

    // The Workspace admin withdraws the delegation: a fresh start cannot log in, and says why.
    oauth.withdrawDelegation();
    const refused = startDaemon(['producer'], { ...env, MAILSTREAM_PREFIX: `${env.MAILSTREAM_PREFIX}-refused` });
    const url = (await refused.waitForLog((l) => l.msg === 'health and metrics listening')).url as string;
    await eventually(async () => {
      const res = await fetch(`${url}/ready`);
      return res.status === 503 && /authentication failed.*service account refused.*domain-wide delegation/.test(((await res.json()) as { reasons: string[] }).reasons.join(' '));
    }, { what: '/ready 503 naming the delegation' });
    await eventually(async () => metricValue(await (await fetch(`${url}/metrics`)).text(), 'mailstream_oauth_token_refreshes_total', 'result="refused"') >= 2, { what: 'retries' });
    expect(refused.logs().filter((l) => l.level === 'error')).toHaveLength(1);
    expect(await refused.stop()).toBe(0);
  });
});
