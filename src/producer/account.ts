// What the producer needs to know about one account, whatever it came from: the single-account
// settings (IMAP_*, OAUTH2_*) today, an accounts file for scale-out.
import type { Config } from '../config/load.ts';
import type { OAuthProvider } from '../config/oauth-providers.ts';
import { ConfigError } from '../core/errors.ts';
import { isPattern } from './mailbox-selection.ts';

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

/**
 * What is wrong when one connection per mailbox does not fit the account's limit (Gmail refuses
 * past about 15). Before the server is asked, a pattern counts for nothing: its matches are
 * checked when they are listed (mailbox-directory.ts).
 */
export function connectionBudgetProblem(account: AccountSettings, mailboxes = account.mailboxes.filter((m) => !isPattern(m)).length): string | undefined {
  if (mailboxes <= account.maxConnections) return undefined;
  return `${mailboxes} mailboxes need as many connections, more than IMAP_MAX_CONNECTIONS=${account.maxConnections}`;
}

/** Start-up check of every account; the error names the setting to change (the accounts file for its accounts). */
export function checkConnectionBudgets(accounts: readonly AccountSettings[], fromAccountsFile: boolean): void {
  for (const account of accounts) {
    const problem = connectionBudgetProblem(account);
    if (!problem) continue;
    throw fromAccountsFile ? new ConfigError('ACCOUNTS_FILE', `account ${account.account}: ${problem}`) : new ConfigError('IMAP_MAILBOXES', problem);
  }
}
