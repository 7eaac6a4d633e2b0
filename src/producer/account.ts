// What the producer needs to know about one account, whatever it came from: the single-account
// settings (IMAP_*, OAUTH2_*) today, an accounts file for scale-out.
import type { Config } from '../config/load.ts';
import type { OAuthProvider } from '../config/oauth-providers.ts';

export type AccountAuth =
  | { kind: 'password'; password: string }
  | { kind: 'oauth2'; provider: OAuthProvider; clientId: string; clientSecret: string; tokenFile: string; tokenUrl: string; scope: string }
  | { kind: 'service-account'; keyFile: string; scope: string; tokenUrl: string };

export interface AccountSettings {
  /** The account name in Redis keys and the stream (the IMAP user). */
  account: string;
  host: string;
  port: number;
  secure: boolean;
  tlsCaFile: string | undefined;
  user: string;
  auth: AccountAuth;
  mailboxes: string[];
  /** Connections this producer may open for the account (Gmail allows about 15). */
  maxConnections: number;
}

/** An account's configuration: the single-account settings, or one entry of the accounts file. */
export interface AccountSource { id: string; imap: Config['imap']; oauth2: Config['oauth2'] }

export function accountFromConfig(source: AccountSource): AccountSettings {
  const { imap, oauth2 } = source;
  let auth: AccountAuth;
  if (imap.auth === 'password') auth = { kind: 'password', password: imap.password ?? '' };
  else if (oauth2.serviceAccountFile) auth = { kind: 'service-account', keyFile: oauth2.serviceAccountFile, scope: oauth2.scope, tokenUrl: oauth2.tokenUrl };
  else auth = { kind: 'oauth2', provider: oauth2.provider, clientId: oauth2.clientId ?? '', clientSecret: oauth2.clientSecret ?? '', tokenFile: oauth2.tokenFile, tokenUrl: oauth2.tokenUrl, scope: oauth2.scope };
  return {
    account: source.id,
    host: imap.host,
    port: imap.port,
    secure: imap.secure,
    tlsCaFile: imap.tlsCaFile,
    user: imap.user,
    auth,
    mailboxes: [...imap.mailboxes],
    maxConnections: imap.maxConnections,
  };
}
