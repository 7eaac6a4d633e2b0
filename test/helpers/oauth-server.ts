// A local OAuth2 provider for tests: token endpoint (refresh_token, authorization_code and a
// service account's signed JWT grant, as Google does domain-wide delegation), RFC 7662 introspection for Dovecot, Google-style tokeninfo, revocation and an
// auto-approving consent page. Tests steer it (revoke, shorten lifetimes) and read its counters.
import { generateKeyPairSync, randomBytes, verify, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

interface AccessToken { email: string; expiresAt: number; scope: string }

export interface OAuthServer {
  url: string;
  tokenUrl: string;
  authUrl: string;
  revokeUrl: string;
  introspectUrl: string;
  clientId: string;
  clientSecret: string;
  /** A refresh token for `email`, as a completed consent would give. */
  issueRefreshToken(email: string): string;
  revokeRefreshToken(token: string): void;
  /** Makes every access token issued so far invalid (as if they expired). */
  expireAccessTokens(): void;
  /** expires_in of new access tokens, in seconds. */
  accessTokenLifetime: number;
  /** When set, the token endpoint answers this HTTP status instead of working. */
  failTokenEndpointWith: number | undefined;
  /** Strict rotation, as Microsoft may: each refresh grant answers a new refresh token and voids the one it used. */
  rotateRefreshTokens: boolean;
  /** The `scope` parameter of the last refresh grant (null: none sent). */
  readonly lastRefreshScope: string | null | undefined;
  counters: { refreshGrants: number; codeGrants: number; jwtGrants: number; introspections: number; revocations: number };
  /**
   * Writes a service-account key file (as the Google console hands out) whose grants this server
   * accepts for any user, as domain-wide delegation does; returns its path.
   */
  writeServiceAccountKey(path: string): string;
  /** Withdraws the delegation: JWT grants are refused with unauthorized_client from now on. */
  withdrawDelegation(): void;
  close(): Promise<void>;
}

async function body(req: IncomingMessage): Promise<URLSearchParams> {
  let text = '';
  for await (const chunk of req) text += chunk;
  if ((req.headers['content-type'] ?? '').includes('application/json')) {
    const json = JSON.parse(text || '{}') as Record<string, string>;
    return new URLSearchParams(json);
  }
  return new URLSearchParams(text);
}

export async function startOAuthServer(): Promise<OAuthServer> {
  const refreshTokens = new Map<string, { email: string; revoked: boolean }>();
  const accessTokens = new Map<string, AccessToken>();
  const codes = new Map<string, { email: string; redirectUri: string }>();
  const token = (kind: string) => `${kind}-${randomBytes(16).toString('hex')}`;

  const state = {
    clientId: 'test-client.apps.example',
    clientSecret: `secret-${randomBytes(8).toString('hex')}`,
    accessTokenLifetime: 3599,
    failTokenEndpointWith: undefined as number | undefined,
    rotateRefreshTokens: false,
    lastRefreshScope: undefined as string | null | undefined,
    counters: { refreshGrants: 0, codeGrants: 0, jwtGrants: 0, introspections: 0, revocations: 0 },
    serviceAccount: undefined as { email: string; publicKey: KeyObject; delegated: boolean } | undefined,
    consentEmail: 'user@example.com',
  };

  const issueAccess = (email: string) => {
    const access = token('ya29');
    accessTokens.set(access, { email, expiresAt: Date.now() + state.accessTokenLifetime * 1000, scope: 'https://mail.google.com/' });
    return access;
  };

  const server: Server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const json = (status: number, payload: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(payload));
    };
    try {
      if (req.method === 'POST' && url.pathname === '/token') {
        if (state.failTokenEndpointWith) return json(state.failTokenEndpointWith, { error: 'temporarily_unavailable' });
        const form = await body(req);
        if (form.get('grant_type') === 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
          state.counters.jwtGrants++;
          const [header, payload, signature] = (form.get('assertion') ?? '').split('.');
          const sa = state.serviceAccount;
          const signed = sa && header && payload && signature
            && verify('RSA-SHA256', Buffer.from(`${header}.${payload}`), sa.publicKey, Buffer.from(signature, 'base64url'));
          if (!signed) return json(400, { error: 'invalid_grant', error_description: 'Invalid JWT Signature.' });
          const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as { iss?: string; sub?: string; scope?: string; exp?: number };
          if (claims.iss !== sa.email || !claims.exp || claims.exp * 1000 < Date.now()) return json(400, { error: 'invalid_grant', error_description: 'Invalid JWT claims.' });
          if (!sa.delegated) return json(401, { error: 'unauthorized_client', error_description: 'Client is unauthorized to retrieve access tokens using this method.' });
          return json(200, { access_token: issueAccess(claims.sub ?? sa.email), expires_in: state.accessTokenLifetime, token_type: 'Bearer' });
        }
        const basic = req.headers.authorization?.startsWith('Basic ')
          ? Buffer.from(req.headers.authorization.slice(6), 'base64').toString().split(':') : [];
        const clientId = form.get('client_id') ?? basic[0];
        const clientSecret = form.get('client_secret') ?? basic[1];
        if (clientId !== state.clientId || clientSecret !== state.clientSecret) return json(401, { error: 'invalid_client' });
        if (form.get('grant_type') === 'refresh_token') {
          state.counters.refreshGrants++;
          const entry = refreshTokens.get(form.get('refresh_token') ?? '');
          state.lastRefreshScope = form.get('scope');
          if (!entry || entry.revoked) return json(400, { error: 'invalid_grant', error_description: 'Token has been expired or revoked.' });
          if (state.rotateRefreshTokens) {
            entry.revoked = true;
            const rotated = token('1//refresh');
            refreshTokens.set(rotated, { email: entry.email, revoked: false });
            return json(200, { access_token: issueAccess(entry.email), refresh_token: rotated, expires_in: state.accessTokenLifetime, token_type: 'Bearer', scope: form.get('scope') ?? 'https://mail.google.com/' });
          }
          return json(200, { access_token: issueAccess(entry.email), expires_in: state.accessTokenLifetime, token_type: 'Bearer', scope: 'https://mail.google.com/' });
        }
        if (form.get('grant_type') === 'authorization_code') {
          state.counters.codeGrants++;
          const code = codes.get(form.get('code') ?? '');
          if (!code || code.redirectUri !== form.get('redirect_uri')) return json(400, { error: 'invalid_grant' });
          codes.delete(form.get('code')!);
          const refresh = token('1//refresh');
          refreshTokens.set(refresh, { email: code.email, revoked: false });
          return json(200, { access_token: issueAccess(code.email), refresh_token: refresh, expires_in: state.accessTokenLifetime, token_type: 'Bearer', scope: 'https://mail.google.com/' });
        }
        return json(400, { error: 'unsupported_grant_type' });
      }
      if (req.method === 'POST' && url.pathname === '/introspect') {
        state.counters.introspections++;
        const form = await body(req);
        const access = accessTokens.get(form.get('token') ?? '');
        if (!access || access.expiresAt < Date.now()) return json(200, { active: false });
        return json(200, { active: true, email: access.email, scope: access.scope });
      }
      if (url.pathname === '/tokeninfo') {
        const access = accessTokens.get(url.searchParams.get('access_token') ?? '');
        if (!access || access.expiresAt < Date.now()) return json(400, { error: 'invalid_token' });
        return json(200, { email: access.email, scope: access.scope, expires_in: Math.round((access.expiresAt - Date.now()) / 1000) });
      }
      if (url.pathname === '/revoke') {
        state.counters.revocations++;
        const form = req.method === 'POST' ? await body(req) : url.searchParams;
        const t = form.get('token') ?? '';
        const refresh = refreshTokens.get(t);
        if (refresh) refresh.revoked = true;
        else if (!accessTokens.delete(t)) return json(400, { error: 'invalid_token' });
        return json(200, {});
      }
      if (req.method === 'GET' && url.pathname === '/auth') {
        // Auto-approve: hand a code straight back to the redirect URI, as a user clicking Allow would.
        const redirectUri = url.searchParams.get('redirect_uri') ?? '';
        if (url.searchParams.get('client_id') !== state.clientId) return json(400, { error: 'invalid_client' });
        const code = token('4/code');
        codes.set(code, { email: state.consentEmail, redirectUri });
        const target = new URL(redirectUri);
        target.searchParams.set('code', code);
        const st = url.searchParams.get('state');
        if (st) target.searchParams.set('state', st);
        res.writeHead(302, { location: target.toString() });
        return res.end();
      }
      json(404, { error: 'not_found' });
    } catch (err) {
      json(500, { error: String(err) });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const api: OAuthServer = {
    url: base,
    tokenUrl: `${base}/token`,
    authUrl: `${base}/auth`,
    revokeUrl: `${base}/revoke`,
    introspectUrl: `${base}/introspect`,
    get clientId() { return state.clientId; },
    get clientSecret() { return state.clientSecret; },
    issueRefreshToken(email) {
      const refresh = token('1//refresh');
      refreshTokens.set(refresh, { email, revoked: false });
      return refresh;
    },
    revokeRefreshToken(t) {
      const entry = refreshTokens.get(t);
      if (entry) entry.revoked = true;
    },
    expireAccessTokens() { for (const a of accessTokens.values()) a.expiresAt = 0; },
    get accessTokenLifetime() { return state.accessTokenLifetime; },
    set accessTokenLifetime(v) { state.accessTokenLifetime = v; },
    get failTokenEndpointWith() { return state.failTokenEndpointWith; },
    set failTokenEndpointWith(v) { state.failTokenEndpointWith = v; },
    get rotateRefreshTokens() { return state.rotateRefreshTokens; },
    set rotateRefreshTokens(v) { state.rotateRefreshTokens = v; },
    get lastRefreshScope() { return state.lastRefreshScope; },
    counters: state.counters,
    writeServiceAccountKey(path) {
      const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const email = 'mailstream-reader@test-project.iam.gserviceaccount.com';
      state.serviceAccount = { email, publicKey, delegated: true };
      writeFileSync(path, JSON.stringify({
        type: 'service_account', project_id: 'test-project', private_key_id: randomBytes(8).toString('hex'),
        private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }), client_email: email, client_id: '1000000000',
        token_uri: `${base}/token`,
      }), { mode: 0o600 });
      return path;
    },
    withdrawDelegation() { if (state.serviceAccount) state.serviceAccount.delegated = false; },
    close: () => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }),
  };
  return api;
}
