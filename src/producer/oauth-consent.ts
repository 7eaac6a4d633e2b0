// The installed-app consent flow behind `mailstream auth setup`: PKCE (S256), a one-shot loopback
// listener on 127.0.0.1 for the redirect, and a consent URL with the provider's parameters (Google:
// offline access with `prompt=consent`, as it only returns a refresh token on a forced consent;
// Microsoft: the `offline_access` scope does that). The code is exchanged at OAUTH2_TOKEN_URL and
// the credentials land in OAUTH2_TOKEN_FILE, atomically, mode 0600.
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PROVIDER_TRAITS, type OAuthProvider } from '../config/oauth-providers.ts';
import { AuthError } from '../core/errors.ts';
import { oauth2Client } from './access-token.ts';
import { writeTokenFile, type StoredCredentials } from './token-file.ts';

export interface ConsentOptions {
  provider: OAuthProvider;
  clientId: string;
  clientSecret: string;
  tokenUrl: string;
  authUrl: string;
  scope: string;
  user: string;
  tokenFile: string;
  timeoutMs: number;
  /** Shows the consent URL to the operator. */
  announce(url: string): void;
}

const CALLBACK_PATH = '/oauth2/callback';

export async function runConsent(options: ConsentOptions): Promise<StoredCredentials> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const redirectUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}${CALLBACK_PATH}`;
  const client = oauth2Client(options, { redirectUri, authUrl: options.authUrl });
  const { codeVerifier, codeChallenge } = await client.generateCodeVerifierAsync();
  const state = randomBytes(16).toString('hex');
  const url = client.generateAuthUrl({
    ...PROVIDER_TRAITS[options.provider].consentParams, scope: options.scope, state, login_hint: options.user,
    code_challenge_method: 'S256' as never, code_challenge: codeChallenge,
  });

  try {
    const code = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new AuthError(`no consent received within ${Math.round(options.timeoutMs / 1000)} s`)), options.timeoutMs);
      server.on('request', (req, res) => {
        const params = new URL(req.url ?? '/', redirectUri).searchParams;
        const reply = (status: number, text: string) => { res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' }); res.end(`${text}\n`); };
        if (!req.url?.startsWith(CALLBACK_PATH)) return reply(404, 'not found');
        if (params.get('state') !== state) return reply(400, 'mailstream: this answer does not belong to the consent in progress');
        clearTimeout(timer);
        const error = params.get('error');
        if (error || !params.get('code')) {
          reply(400, `mailstream: consent refused (${error ?? 'no code'}); you can close this tab`);
          return reject(new AuthError(`consent refused by the provider: ${error ?? 'no code in the redirect'}`));
        }
        reply(200, 'mailstream: consent received; you can close this tab');
        resolve(params.get('code')!);
      });
      options.announce(url);
    });
    const { tokens } = await client.getToken({ code, codeVerifier, redirect_uri: redirectUri }).catch((err: unknown) => {
      throw new AuthError(`the token endpoint refused the consent code: ${(err as Error).message}`, { cause: err });
    });
    if (!tokens.refresh_token) {
      throw new AuthError(options.provider === 'google'
        ? 'the provider returned no refresh token; revoke the app\'s access in the account settings and run `mailstream auth setup` again'
        : `the provider returned no refresh token; the scope (${options.scope}) must ask for offline access (Microsoft: offline_access)`);
    }
    const stored: StoredCredentials = { ...tokens, account: options.user };
    writeTokenFile(options.tokenFile, stored);
    return stored;
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
