// Opens one logged-in IMAP connection. Certificates are always checked: IMAP_TLS_CA_FILE adds a
// CA to Node's trust store, it never replaces verification. An OAuth2 login fetches a fresh access
// token first (stale tokens on reconnect are a classic bug) and, if the server refuses it,
// retries once with a forced refresh before calling it an authentication failure.
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { ImapFlow, type ImapFlowOptions } from 'imapflow';
import { AuthError } from '../core/errors.ts';
import type { AccessTokenSource } from './access-token.ts';
import type { AccountSettings } from './account.ts';

export interface ConnectDeps {
  tokens: AccessTokenSource | undefined;
  /** Called with every new client before it connects, to attach listeners (an 'error' one above all). */
  onClient: (client: ImapFlow) => void;
}

/** Seconds of silence on the socket before imapflow gives up on it. */
const SOCKET_TIMEOUT_MS = 5 * 60_000;

function tlsOptions(account: AccountSettings): ImapFlowOptions['tls'] {
  if (!account.tlsCaFile) return { rejectUnauthorized: true };
  return { rejectUnauthorized: true, ca: [...rootCertificates, readFileSync(account.tlsCaFile, 'utf8')] };
}

function isAuthFailure(err: unknown): boolean {
  return (err as { authenticationFailed?: boolean }).authenticationFailed === true;
}

async function attempt(account: AccountSettings, auth: ImapFlowOptions['auth'], deps: ConnectDeps): Promise<ImapFlow> {
  const client = new ImapFlow({
    host: account.host,
    port: account.port,
    secure: account.secure,
    tls: tlsOptions(account),
    auth,
    logger: false,
    // We run IDLE ourselves, to bound it and to wake on our own timers.
    disableAutoIdle: true,
    socketTimeout: SOCKET_TIMEOUT_MS,
    connectionTimeout: 30_000,
    greetingTimeout: 30_000,
  });
  deps.onClient(client);
  try {
    await client.connect();
    return client;
  } catch (err) {
    client.close();
    throw err;
  }
}

export async function connectImap(account: AccountSettings, deps: ConnectDeps): Promise<ImapFlow> {
  if (account.auth.kind === 'password') {
    try {
      return await attempt(account, { user: account.user, pass: account.auth.password }, deps);
    } catch (err) {
      if (isAuthFailure(err)) throw new AuthError(`IMAP login refused for ${account.user}: check IMAP_PASSWORD`, { cause: err });
      throw err;
    }
  }
  const tokens = deps.tokens!;
  try {
    return await attempt(account, { user: account.user, accessToken: await tokens.get() }, deps);
  } catch (err) {
    if (!isAuthFailure(err)) throw err;
  }
  try {
    return await attempt(account, { user: account.user, accessToken: await tokens.get({ force: true }) }, deps);
  } catch (err) {
    if (isAuthFailure(err)) throw new AuthError(`IMAP server refused a freshly refreshed OAuth2 token for ${account.user}`, { cause: err });
    throw err;
  }
}
