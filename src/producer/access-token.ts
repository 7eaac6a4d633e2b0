// Access tokens for XOAUTH2: google-auth-library refreshes them (early, before expiry), against
// the provider's token endpoint, and we keep the token file in step: a provider may rotate the
// refresh token (Microsoft does on every refresh), and the newest one is saved and used. A refused
// refresh token is an AuthError with one clear instruction; anything else (network, 5xx) is a
// transient failure.
import { gaxios, JWT, OAuth2Client } from 'google-auth-library';
import { PROVIDER_TRAITS, type OAuthProvider } from '../config/oauth-providers.ts';
import { AuthError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import type { AccountAuth } from './account.ts';
import { readTokenFile, writeTokenFile } from './token-file.ts';

/** Where google-auth-library sends a service account's signed grant, whatever it is told. */
const GOOGLE_TOKEN_URL = 'https://oauth2.googleapis.com/token';

/**
 * The HTTP client of a service account's JWT grant. google-auth-library posts that grant to
 * Google's endpoint unconditionally; OAUTH2_TOKEN_URL, honoured by the refresh-token flow, is
 * honoured here too (a proxy, a private endpoint, a test's local provider).
 */
function jwtTransporter(tokenUrl: string): gaxios.Gaxios {
  const transporter = new gaxios.Gaxios();
  if (tokenUrl !== GOOGLE_TOKEN_URL) {
    transporter.interceptors.request.add({
      resolved: async (config) => {
        if (String(config.url) === GOOGLE_TOKEN_URL) config.url = new URL(tokenUrl);
        return config;
      },
    });
  }
  return transporter;
}

/** Renewal lead time; google-auth-library would refresh on its own within 5 minutes of expiry. */
const RENEW_BEFORE_EXPIRY_MS = 5 * 60_000;

export interface AccessTokenSource {
  /** A valid access token; `force` skips the cache (after the server refused the cached one). */
  get(options?: { force?: boolean }): Promise<string>;
}

/** OAuth2 error codes (RFC 6749 section 5.2, and Microsoft's interaction_required) that no retry can fix: the operator must act. */
const REFUSALS = new Set(['invalid_grant', 'invalid_client', 'unauthorized_client', 'interaction_required', 'consent_required']);

function isRefused(err: unknown): boolean {
  const data = (err as { response?: { data?: { error?: unknown } } }).response?.data;
  return typeof data?.error === 'string' && REFUSALS.has(data.error);
}

/**
 * The HTTP client of the refresh grant: Microsoft's v2.0 token endpoint wants the scope with each
 * refresh, which google-auth-library (made for Google's, which does not) never sends.
 */
function refreshTransporter(scope: string | undefined): gaxios.Gaxios {
  const transporter = new gaxios.Gaxios();
  if (scope) {
    transporter.interceptors.request.add({
      resolved: async (config) => {
        const form = config.data;
        if (form instanceof URLSearchParams && form.get('grant_type') === 'refresh_token' && !form.has('scope')) form.set('scope', scope);
        return config;
      },
    });
  }
  return transporter;
}

function describe(err: unknown): string {
  const data = (err as { response?: { data?: { error?: string; error_description?: string } } }).response?.data;
  return data?.error ? `${data.error}${data.error_description ? `: ${data.error_description}` : ''}` : (err as Error).message;
}

export function oauth2Client(auth: { clientId: string; clientSecret: string; tokenUrl: string; provider?: OAuthProvider; scope?: string }, extra: { redirectUri?: string; authUrl?: string; revokeUrl?: string } = {}): OAuth2Client {
  const scopeOnRefresh = auth.provider !== undefined && PROVIDER_TRAITS[auth.provider].scopeOnRefresh;
  return new OAuth2Client({
    clientId: auth.clientId,
    clientSecret: auth.clientSecret,
    redirectUri: extra.redirectUri,
    transporter: refreshTransporter(scopeOnRefresh ? auth.scope : undefined),
    endpoints: {
      oauth2TokenUrl: auth.tokenUrl,
      ...(extra.authUrl ? { oauth2AuthBaseUrl: extra.authUrl } : {}),
      ...(extra.revokeUrl ? { oauth2RevokeUrl: extra.revokeUrl } : {}),
    },
  });
}

export function createAccessTokenSource(auth: Exclude<AccountAuth, { kind: 'password' }>, user: string, deps: { logger: Logger; metrics?: Metrics }): AccessTokenSource {
  const count = (result: 'ok' | 'refused' | 'failed') => deps.metrics?.tokenRefreshes.inc({ account: user, result });
  if (auth.kind === 'service-account') {
    // Domain-wide delegation: the service account acts as the mailbox's user.
    const jwt = new JWT({ keyFile: auth.keyFile, scopes: [auth.scope], subject: user, transporter: jwtTransporter(auth.tokenUrl) });
    return {
      async get(options) {
        try {
          if (options?.force) jwt.credentials = {};
          const { token } = await jwt.getAccessToken();
          if (!token) throw new Error('the token endpoint returned no access token');
          count('ok');
          return token;
        } catch (err) {
          if (isRefused(err)) { count('refused'); throw new AuthError(`service account refused for ${user} (${describe(err)}): check domain-wide delegation and OAUTH2_SERVICE_ACCOUNT_FILE`, { cause: err }); }
          count('failed');
          throw new Error(`access token not obtained: ${describe(err)}`, { cause: err });
        }
      },
    };
  }

  const client = oauth2Client(auth);
  let loaded = false;
  let renewal: NodeJS.Timeout | undefined;
  // google-auth-library keeps the refresh token it was given and drops a rotated one from its
  // answer; the 'tokens' event still shows it, and it is put back once the refresh is done.
  let rotated: string | undefined;
  const refresh = async () => {
    try {
      return await client.getAccessToken();
    } finally {
      if (rotated && rotated !== client.credentials.refresh_token) client.setCredentials({ ...client.credentials, refresh_token: rotated });
      rotated = undefined;
    }
  };
  // Renew ahead of expiry, so the token file stays current and a reconnect never waits on it.
  const scheduleRenewal = () => {
    clearTimeout(renewal);
    const expiry = client.credentials.expiry_date;
    if (!expiry) return;
    renewal = setTimeout(() => {
      client.setCredentials({ ...client.credentials, access_token: null, expiry_date: null });
      refresh().then(scheduleRenewal, (err: unknown) => deps.logger.warn({ err: describe(err) }, 'early access-token renewal failed; the next login retries'));
    }, Math.max(1_000, expiry - Date.now() - RENEW_BEFORE_EXPIRY_MS));
    renewal.unref();
  };
  const load = () => {
    if (loaded) return;
    const stored = readTokenFile(auth.tokenFile);
    if (!stored.refresh_token) throw new AuthError(`OAuth2 token file ${auth.tokenFile} has no refresh_token: run \`mailstream auth setup\``);
    client.setCredentials(stored);
    loaded = true;
  };
  client.on('tokens', (tokens) => {
    count('ok');
    if (tokens.refresh_token) rotated = tokens.refresh_token;
    try {
      const stored = readTokenFile(auth.tokenFile);
      writeTokenFile(auth.tokenFile, { ...stored, ...tokens, refresh_token: tokens.refresh_token ?? stored.refresh_token });
    } catch (err) {
      deps.logger.warn({ err, tokenFile: auth.tokenFile }, 'refreshed access token not saved to the token file');
    }
  });
  return {
    async get(options) {
      load();
      if (options?.force) client.setCredentials({ ...client.credentials, access_token: null, expiry_date: null });
      try {
        const { token } = await refresh();
        if (!token) throw new Error('the token endpoint returned no access token');
        scheduleRenewal();
        return token;
      } catch (err) {
        if (isRefused(err)) {
          count('refused');
          loaded = false; // a new consent rewrites the file; pick it up on the next try
          throw new AuthError(`OAuth2 refresh token refused for ${user} (${describe(err)}): run \`mailstream auth setup\``, { cause: err });
        }
        count('failed');
        throw new Error(`access token not obtained: ${describe(err)}`, { cause: err });
      }
    },
  };
}
