// Opens one logged-in IMAP connection. Certificates are always checked: IMAP_TLS_CA_FILE adds a
// CA to Node's trust store, it never replaces verification. An OAuth2 login fetches a fresh access
// token first (stale tokens on reconnect are a classic bug) and, if the server refuses it,
// retries once with a forced refresh before calling it an authentication failure. A login the
// server refuses for another reason (throttling, a used-up quota, too many connections) is not
// retried here: it is reported by its kind, and the mailbox runner waits as that kind asks.
import { readFileSync, statSync } from 'node:fs';
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';
import { ImapFlow, type ImapFlowOptions } from 'imapflow';
import { AuthError, DependencyError, imapErrorKind, imapResponseCode, type ErrorKind } from '../core/errors.ts';
import type { AccessTokenSource } from './access-token.ts';
import type { AccountSettings } from './account.ts';

export interface ConnectDeps {
  tokens: AccessTokenSource | undefined;
  /** Called with every new client before it connects, to attach listeners (an 'error' one above all). */
  onClient: (client: ImapFlow) => void;
  /** ENABLE QRESYNC where the server has it (TRACK_CHANGES). */
  qresync?: boolean;
  /** Waits for the process's login pacer (IMAP_CONNECT_RATE) before each TLS handshake, a retry's too. */
  pace?: () => Promise<void>;
}

/** Seconds of silence on the socket before imapflow gives up on it. */
const SOCKET_TIMEOUT_MS = 5 * 60_000;

/**
 * One TLS context per CA file, shared by every connection that trusts it. A `ca` option builds a
 * new context, Node's 120-odd root certificates parsed again, per connection: about 0.85 MB each,
 * most of what an idle mailbox cost. A file changed on disk gets a new context at the next login.
 */
const contexts = new Map<string, { mtimeMs: number; context: SecureContext }>();

function caContext(file: string): SecureContext {
  const { mtimeMs } = statSync(file);
  const known = contexts.get(file);
  if (known && known.mtimeMs === mtimeMs) return known.context;
  const context = createSecureContext({ ca: [...rootCertificates, readFileSync(file, 'utf8')] });
  contexts.set(file, { mtimeMs, context });
  return context;
}

function tlsOptions(account: AccountSettings): ImapFlowOptions['tls'] {
  if (!account.tlsCaFile) return { rejectUnauthorized: true };
  return { rejectUnauthorized: true, secureContext: caContext(account.tlsCaFile) };
}

/** Connections this producer holds open per account (the object its runners share), logging in or logged in. */
const held = new WeakMap<AccountSettings, number>();

export function openConnections(account: AccountSettings): number {
  return held.get(account) ?? 0;
}

const hold = (account: AccountSettings, delta: number) => held.set(account, Math.max(0, openConnections(account) + delta));

/**
 * What the server said, for people: the status, the response code and its text (`NO [THROTTLED]
 * Account exceeded command or bandwidth limits`). Only shown and logged; the kind comes from the code.
 */
export function serverAnswer(err: unknown): string {
  const e = err as { responseStatus?: unknown; responseText?: unknown; reason?: unknown; message?: unknown };
  if (typeof e.responseStatus !== 'string') return typeof e.reason === 'string' ? `BYE ${e.reason}` : String(e.message ?? err);
  const code = imapResponseCode(err);
  return [e.responseStatus, code ? `[${code}]` : '', typeof e.responseText === 'string' ? e.responseText : ''].filter(Boolean).join(' ');
}

/** A refused login that is not about the credentials: throttling, quota, an [ALERT] for a person. */
function refusalOf(err: unknown, user: string): DependencyError | undefined {
  const kind: ErrorKind = imapErrorKind(err);
  if (kind !== 'imap-throttled' && kind !== 'imap-over-quota') return undefined;
  return new DependencyError(kind, `IMAP server refused the login of ${user}: ${serverAnswer(err)}`, { cause: err });
}

function isAuthFailure(err: unknown): boolean {
  return (err as { authenticationFailed?: boolean }).authenticationFailed === true && imapErrorKind(err) === 'imap-auth';
}

async function attempt(account: AccountSettings, auth: ImapFlowOptions['auth'], deps: ConnectDeps): Promise<ImapFlow> {
  await deps.pace?.();
  const client = new ImapFlow({
    host: account.host,
    port: account.port,
    secure: account.secure,
    tls: tlsOptions(account),
    auth,
    logger: false,
    // We run IDLE ourselves, to bound it and to wake on our own timers.
    disableAutoIdle: true,
    qresync: deps.qresync ?? false,
    socketTimeout: SOCKET_TIMEOUT_MS,
    connectionTimeout: 30_000,
    greetingTimeout: 30_000,
  });
  deps.onClient(client);
  hold(account, 1);
  try {
    await client.connect();
  } catch (err) {
    // Released before the caller hears of it: a refusal's report counts the other connections.
    hold(account, -1);
    client.close();
    throw err;
  }
  client.once('close', () => hold(account, -1));
  return client;
}

export async function connectImap(account: AccountSettings, deps: ConnectDeps): Promise<ImapFlow> {
  if (account.auth.kind === 'password') {
    try {
      return await attempt(account, { user: account.user, pass: account.auth.password }, deps);
    } catch (err) {
      const refusal = refusalOf(err, account.user);
      if (refusal) throw refusal;
      if (isAuthFailure(err)) throw new AuthError(`IMAP login refused for ${account.user}: check IMAP_PASSWORD`, { cause: err });
      throw err;
    }
  }
  const tokens = deps.tokens!;
  try {
    return await attempt(account, { user: account.user, accessToken: await tokens.get() }, deps);
  } catch (err) {
    const refusal = refusalOf(err, account.user);
    if (refusal) throw refusal;
    if (!isAuthFailure(err)) throw err;
  }
  try {
    return await attempt(account, { user: account.user, accessToken: await tokens.get({ force: true }) }, deps);
  } catch (err) {
    const refusal = refusalOf(err, account.user);
    if (refusal) throw refusal;
    if (isAuthFailure(err)) throw new AuthError(`IMAP server refused a freshly refreshed OAuth2 token for ${account.user}`, { cause: err });
    throw err;
  }
}
