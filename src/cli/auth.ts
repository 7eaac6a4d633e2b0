import type { Command } from 'commander';
import { loadAccounts } from '../config/accounts.ts';
import { ENDPOINT_SETTINGS, NO_REVOCATION_ADVICE } from '../config/oauth-providers.ts';
import { ConfigError, UsageError } from '../core/errors.ts';
import type { Config } from '../config/load.ts';
import { createLogger, type Logger } from '../core/logger.ts';
import { action, commandContext } from './run-command.ts';

interface Target {
  user: string;
  oauth2: Config['oauth2'];
  logger: Logger;
}

/**
 * Whose credentials: `--account` picks an account of ACCOUNTS_FILE (its client, secret and token
 * file; only its secrets are read), else IMAP_USER with the OAUTH2_* settings.
 */
function target(command: Command): Target {
  const { config, logger, env } = commandContext(command, 'admin');
  const chosen = command.parent?.opts<{ account?: string }>().account;
  if (chosen === undefined || (config.accountsFile === undefined && chosen === config.imap.user)) {
    if (!config.imap.user) throw new ConfigError('IMAP_USER', 'required: the account the credentials are for (or --account with ACCOUNTS_FILE)');
    return { user: config.imap.user, oauth2: config.oauth2, logger };
  }
  if (config.accountsFile === undefined) throw new UsageError(`--account ${chosen}: no ACCOUNTS_FILE is set, and IMAP_USER is ${config.imap.user || 'not set'}`);
  const { accounts, secrets } = loadAccounts(config.accountsFile, { base: { imap: config.imap, oauth2: config.oauth2 }, env, resolveSecrets: chosen });
  const account = accounts.find((a) => a.id === chosen || a.imap.user === chosen);
  if (!account) throw new UsageError(`--account ${chosen} is not in ACCOUNTS_FILE (accounts: ${accounts.map((a) => a.id).join(', ')})`);
  if (account.imap.auth !== 'oauth2') throw new UsageError(`--account ${chosen} logs in with a password: it has no OAuth2 credentials`);
  // The secrets just read join those the logger scrubs.
  return { user: account.imap.user, oauth2: account.oauth2, logger: createLogger({ level: config.logLevel, secrets: [...config.secrets, ...secrets], base: { role: 'admin' } }) };
}

function oauthSettings(t: Target, needs: Array<'tokenUrl' | 'authUrl' | 'scope'> = ['tokenUrl', 'scope']) {
  const { clientId, clientSecret } = t.oauth2;
  if (!clientId) throw new ConfigError('OAUTH2_CLIENT_ID', 'required for `auth` commands (or the account\'s oauth2.clientId)');
  if (!clientSecret) throw new ConfigError('OAUTH2_CLIENT_SECRET', 'required for `auth` commands (or the account\'s oauth2.clientSecret)');
  // Only a `custom` provider can leave an endpoint unset.
  const unset = needs.find((field) => !t.oauth2[field]);
  if (unset) throw new ConfigError(ENDPOINT_SETTINGS[unset], `required when OAUTH2_PROVIDER=${t.oauth2.provider} (or the account's oauth2.${unset})`);
  return { ...t.oauth2, clientId, clientSecret, user: t.user };
}

export function registerAuth(program: Command): void {
  const auth = program.command('auth').description('OAuth2 credentials of the IMAP account')
    .option('--account <id>', 'an account of ACCOUNTS_FILE (default: IMAP_USER and the OAUTH2_* settings)');

  auth.command('setup').description('interactive consent in a browser (loopback redirect); writes OAUTH2_TOKEN_FILE mode 0600')
    .option('--timeout <seconds>', 'how long to wait for the consent', '300')
    .action(action(async (opts: { timeout: string }, command: Command) => {
      const settings = oauthSettings(target(command), ['tokenUrl', 'authUrl', 'scope']);
      const { runConsent } = await import('../producer/oauth-consent.ts');
      const stored = await runConsent({
        ...settings, timeoutMs: Number(opts.timeout) * 1000,
        announce: (url) => process.stdout.write(`Open this URL in a browser signed in as ${settings.user} and allow access:\n\n${url}\n\nWaiting for the consent (redirect to 127.0.0.1)...\n`),
      });
      process.stdout.write(`Credentials for ${settings.user} written to ${settings.tokenFile} (mode 0600); scope: ${stored.scope ?? settings.scope}\n`);
    }));

  auth.command('info').description('show token state: account, scopes, expiry (never the token)')
    .option('--json', 'machine-readable output')
    .action(action(async (opts: { json?: boolean }, command: Command) => {
      const { user, oauth2 } = target(command);
      const { statSync } = await import('node:fs');
      const { readTokenFile } = await import('../producer/token-file.ts');
      const stored = readTokenFile(oauth2.tokenFile);
      const info = {
        account: stored.account ?? user,
        tokenFile: oauth2.tokenFile,
        fileMode: (statSync(oauth2.tokenFile).mode & 0o777).toString(8).padStart(4, '0'),
        hasRefreshToken: Boolean(stored.refresh_token),
        scopes: (stored.scope ?? '').split(' ').filter(Boolean),
        accessTokenExpiresAt: stored.expiry_date ? new Date(stored.expiry_date).toISOString() : null,
      };
      if (opts.json) process.stdout.write(`${JSON.stringify(info, null, 2)}\n`);
      else process.stdout.write(Object.entries(info).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(' ') || '(unknown)' : String(v ?? '(none)')}`).join('\n') + '\n');
    }));

  auth.command('refresh').description('force an access-token refresh now')
    .action(action(async (_opts: object, command: Command) => {
      const chosen = target(command);
      const settings = oauthSettings(chosen);
      const { logger } = chosen;
      const { createAccessTokenSource } = await import('../producer/access-token.ts');
      const { readTokenFile } = await import('../producer/token-file.ts');
      const source = createAccessTokenSource({ kind: 'oauth2', ...settings }, settings.user, { logger });
      await source.get({ force: true });
      const expiry = readTokenFile(settings.tokenFile).expiry_date;
      process.stdout.write(`Access token refreshed for ${settings.user}; expires ${expiry ? new Date(expiry).toISOString() : 'at an unknown time'}\n`);
    }));

  auth.command('revoke').description('revoke the refresh token at the provider and delete the token file (Microsoft: delete it and say how to revoke)')
    .action(action(async (_opts: object, command: Command) => {
      const { oauth2 } = target(command);
      const { rmSync } = await import('node:fs');
      const { readTokenFile } = await import('../producer/token-file.ts');
      const { AuthError } = await import('../core/errors.ts');
      const stored = readTokenFile(oauth2.tokenFile);
      if (!oauth2.revokeUrl) {
        // Nothing to call: the local copy goes, and the operator is told where access really ends.
        rmSync(oauth2.tokenFile, { force: true });
        const advice = NO_REVOCATION_ADVICE[oauth2.provider] ?? 'No revocation endpoint is configured (OAUTH2_REVOKE_URL): revoke the app\'s access at the provider.';
        process.stdout.write(`Deleted ${oauth2.tokenFile}; the refresh token was NOT revoked at the provider.\n${advice}\n`);
        return;
      }
      const token = stored.refresh_token ?? stored.access_token;
      if (token) {
        const res = await fetch(oauth2.revokeUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token }) });
        // 400 invalid_token: already revoked or expired, which is what was asked.
        if (!res.ok && res.status !== 400) throw new AuthError(`revocation endpoint answered HTTP ${res.status}; the token file was kept`);
      }
      rmSync(oauth2.tokenFile, { force: true });
      process.stdout.write(`Revoked and deleted ${oauth2.tokenFile}\n`);
    }));
}
