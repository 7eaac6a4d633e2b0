// OAUTH2_PROVIDER=microsoft against the local provider standing in for Microsoft's identity
// platform (strict refresh-token rotation on): the consent URL Microsoft expects, the scope sent
// with every refresh, a rotated refresh token saved (mode 0600) and used next, XOAUTH2 logins to
// Dovecot through a re-login, and `auth revoke` saying what to do as Microsoft has no endpoint for it.
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { startDovecot, type Dovecot } from '../helpers/dovecot.ts';
import { startOAuthServer, type OAuthServer } from '../helpers/oauth-server.ts';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.ts';
import { generateCorpus } from '../helpers/corpus.ts';
import { BIN, ROOT, baseEnv, runCli, startDaemon } from '../helpers/cli.ts';
import { eventually } from '../helpers/ports.ts';
import { killAllTracked, spawnTracked } from '../helpers/processes.ts';
import { producerEnv } from '../helpers/producer-env.ts';
import { accountKeys } from '../../src/core/keys.ts';

const USER = 'user@example.com';
const MICROSOFT_SCOPE = 'https://outlook.office.com/IMAP.AccessAsUser.All offline_access';
let oauth: OAuthServer;
let dovecot: Dovecot;
let redisServer: RedisServer;
let redis: Redis;

beforeAll(async () => {
  oauth = await startOAuthServer();
  oauth.rotateRefreshTokens = true;
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

/** Microsoft's settings, with its two endpoints pointed at the local provider (no revocation endpoint). */
function microsoftEnv(tokenFile: string): Record<string, string> {
  return {
    IMAP_USER: USER, OAUTH2_PROVIDER: 'microsoft', OAUTH2_TENANT: 'contoso.example',
    OAUTH2_CLIENT_ID: oauth.clientId, OAUTH2_CLIENT_SECRET: oauth.clientSecret,
    OAUTH2_TOKEN_URL: oauth.tokenUrl, OAUTH2_AUTH_URL: oauth.authUrl, OAUTH2_TOKEN_FILE: tokenFile,
  };
}

const stored = (tokenFile: string) => JSON.parse(readFileSync(tokenFile, 'utf8')) as { refresh_token: string; account?: string };

describe('Microsoft 365 and Outlook.com (OAUTH2_PROVIDER=microsoft)', () => {
  it('auth setup, refresh and revoke: Microsoft\'s consent parameters, the scope on refresh, a rotated refresh token kept, no revocation endpoint', async () => {
    const tokenFile = join(mkdtempSync(join(tmpdir(), 'ms-microsoft-')), `${USER}.json`);
    const env = microsoftEnv(tokenFile);
    const setup = spawnTracked(process.execPath, ['--', BIN, 'auth', 'setup'], { env: baseEnv(env), cwd: ROOT });
    const consentUrl = new URL(await eventually(() => /^(http:\/\/\S+\/auth\?\S+)$/m.exec(setup.output())?.[1], { what: 'the consent URL' }));
    expect((await fetch(consentUrl)).status).toBe(200); // the local provider approves, as the user clicking Accept
    expect(await setup.exited).toBe(0);
    expect(consentUrl.searchParams.get('scope')).toBe(MICROSOFT_SCOPE);
    // No Google-only access_type; no forced consent, which a tenant's admin may already have given.
    expect(consentUrl.searchParams.has('access_type')).toBe(false);
    expect(consentUrl.searchParams.get('prompt')).toBe('select_account');
    expect(consentUrl.searchParams.get('code_challenge_method')).toBe('S256');
    expect(consentUrl.searchParams.get('login_hint')).toBe(USER);
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    const consented = stored(tokenFile).refresh_token;

    const refreshed = await runCli(['auth', 'refresh'], env);
    expect(refreshed.code, refreshed.stderr).toBe(0);
    expect(oauth.lastRefreshScope).toBe(MICROSOFT_SCOPE);
    const rotated = stored(tokenFile).refresh_token;
    expect(rotated).not.toBe(consented);
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    // The old one is void now (strict rotation): a second refresh works only with the saved one.
    expect((await runCli(['auth', 'refresh'], env)).code).toBe(0);
    expect(stored(tokenFile).refresh_token).not.toBe(rotated);

    const revocations = oauth.counters.revocations;
    const revoked = await runCli(['auth', 'revoke'], env);
    expect(revoked.code).toBe(0);
    expect(existsSync(tokenFile)).toBe(false);
    expect(oauth.counters.revocations).toBe(revocations);
    expect(revoked.stdout).toMatch(/NOT revoked at the provider/);
    expect(revoked.stdout).toMatch(/Revoke sessions/);
  });

  it('the producer logs in with XOAUTH2, and after the server ends its session refreshes with the rotated token and goes on', async () => {
    dovecot.seed(USER, 'Office', generateCorpus(2, { seed: 131, tag: 'office' }).map((m) => m.raw));
    const env = producerEnv({ redisUrl: redisServer.url, dovecot, oauth, mailboxes: ['Office'], extra: { START_FROM: 'all', OAUTH2_PROVIDER: 'microsoft' } });
    delete env.OAUTH2_REVOKE_URL;
    const tokenFile = env.OAUTH2_TOKEN_FILE!;
    const first = stored(tokenFile).refresh_token;
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);
    const daemon = startDaemon(['producer'], env);
    try {
      await eventually(async () => (await redis.xlen(keys.stream)) === 2, { what: 'the mailbox over XOAUTH2' });
      expect(oauth.lastRefreshScope).toBe(MICROSOFT_SCOPE);
      const second = await eventually(() => { const t = stored(tokenFile).refresh_token; return t !== first ? t : undefined; }, { what: 'the rotated refresh token saved' });
      expect(statSync(tokenFile).mode & 0o777).toBe(0o600);

      // The access token dies and the server ends the session: the next login needs a refresh,
      // which only the rotated refresh token can get.
      oauth.expireAccessTokens();
      await dovecot.doveadm('kick', USER);
      await dovecot.append(USER, 'Office', generateCorpus(1, { seed: 132, tag: 'office-new' }).map((m) => m.raw));
      await eventually(async () => (await redis.xlen(keys.stream)) === 3, { what: 'mail after the re-login' });
      expect(stored(tokenFile).refresh_token).not.toBe(second);
      expect(daemon.logs().filter((l) => l.level === 'error')).toEqual([]);
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  });

  it('custom: `auth setup` without a consent endpoint names OAUTH2_AUTH_URL (exit 78)', async () => {
    const result = await runCli(['auth', 'setup'], {
      IMAP_USER: USER, OAUTH2_PROVIDER: 'custom', OAUTH2_CLIENT_ID: 'id', OAUTH2_CLIENT_SECRET: 'secret-value',
      OAUTH2_TOKEN_URL: oauth.tokenUrl, OAUTH2_SCOPE: 'mail',
    });
    expect(result.code).toBe(78);
    expect(result.stderr).toMatch(/OAUTH2_AUTH_URL.*required when OAUTH2_PROVIDER=custom/);
  });
});
