// Settings for a producer under test: private Redis, private Dovecot over TLS with XOAUTH2 against
// the local OAuth server, a unique key prefix, and a token file written as `auth setup` would.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Dovecot } from './dovecot.ts';
import type { OAuthServer } from './oauth-server.ts';

export interface ProducerEnvOptions {
  redisUrl: string;
  dovecot: Dovecot;
  oauth?: OAuthServer;
  user?: string;
  mailboxes?: string[];
  extra?: Record<string, string>;
}

export function uniquePrefix(name: string): string {
  return `t-${name}-${randomBytes(3).toString('hex')}`;
}

/** Writes a token file holding a fresh refresh token for `user`; returns its path. */
export function tokenFileFor(oauth: OAuthServer, user: string): { path: string; refreshToken: string } {
  const dir = mkdtempSync(join(tmpdir(), 'ms-tokens-'));
  const refreshToken = oauth.issueRefreshToken(user);
  const path = join(dir, `${user}.json`);
  writeFileSync(path, JSON.stringify({ refresh_token: refreshToken }), { mode: 0o600 });
  return { path, refreshToken };
}

export function producerEnv(options: ProducerEnvOptions): Record<string, string> {
  const user = options.user ?? 'user@example.com';
  const auth: Record<string, string> = options.oauth
    ? {
      IMAP_AUTH: 'oauth2',
      OAUTH2_CLIENT_ID: options.oauth.clientId,
      OAUTH2_CLIENT_SECRET: options.oauth.clientSecret,
      OAUTH2_TOKEN_URL: options.oauth.tokenUrl,
      OAUTH2_AUTH_URL: options.oauth.authUrl,
      OAUTH2_REVOKE_URL: options.oauth.revokeUrl,
      OAUTH2_TOKEN_FILE: tokenFileFor(options.oauth, user).path,
    }
    : { IMAP_AUTH: 'password', IMAP_PASSWORD: options.dovecot.users.find((u) => u.user === user)?.password ?? '' };
  return {
    REDIS_URL: options.redisUrl,
    MAILSTREAM_PREFIX: uniquePrefix('p'),
    IMAP_HOST: '127.0.0.1',
    IMAP_PORT: String(options.dovecot.tlsPort),
    IMAP_SECURE: 'true',
    IMAP_TLS_CA_FILE: options.dovecot.caFile,
    IMAP_USER: user,
    IMAP_MAILBOXES: (options.mailboxes ?? ['INBOX']).join(','),
    HTTP_PORT: '0',
    RECONNECT_BASE_MS: '100',
    RECONNECT_MAX_MS: '1000',
    // A producer killed by a test leaves its leases behind; its successor waits this long for them.
    LEASE_TTL_MS: '5000',
    ...auth,
    ...options.extra,
  };
}
