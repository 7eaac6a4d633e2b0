import type { Command } from 'commander';
import { ConfigError } from '../core/errors.ts';
import type { Config } from '../config/load.ts';
import { action, commandContext } from './run-command.ts';

function oauthSettings(config: Readonly<Config>) {
  const { clientId, clientSecret } = config.oauth2;
  if (!config.imap.user) throw new ConfigError('IMAP_USER', 'required: the account the credentials are for');
  if (!clientId) throw new ConfigError('OAUTH2_CLIENT_ID', 'required for `auth` commands');
  if (!clientSecret) throw new ConfigError('OAUTH2_CLIENT_SECRET', 'required for `auth` commands');
  return { ...config.oauth2, clientId, clientSecret, user: config.imap.user };
}

export function registerAuth(program: Command): void {
  const auth = program.command('auth').description('OAuth2 credentials of the IMAP account');

  auth.command('setup').description('interactive consent in a browser (loopback redirect); writes OAUTH2_TOKEN_FILE mode 0600')
    .option('--timeout <seconds>', 'how long to wait for the consent', '300')
    .action(action(async (opts: { timeout: string }, command: Command) => {
      const { config } = commandContext(command, 'admin');
      const settings = oauthSettings(config);
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
      const { config } = commandContext(command, 'admin');
      const { statSync } = await import('node:fs');
      const { readTokenFile } = await import('../producer/token-file.ts');
      const stored = readTokenFile(config.oauth2.tokenFile);
      const info = {
        account: stored.account ?? config.imap.user,
        tokenFile: config.oauth2.tokenFile,
        fileMode: (statSync(config.oauth2.tokenFile).mode & 0o777).toString(8).padStart(4, '0'),
        hasRefreshToken: Boolean(stored.refresh_token),
        scopes: (stored.scope ?? '').split(' ').filter(Boolean),
        accessTokenExpiresAt: stored.expiry_date ? new Date(stored.expiry_date).toISOString() : null,
      };
      if (opts.json) process.stdout.write(`${JSON.stringify(info, null, 2)}\n`);
      else process.stdout.write(Object.entries(info).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(' ') || '(unknown)' : String(v ?? '(none)')}`).join('\n') + '\n');
    }));

  auth.command('refresh').description('force an access-token refresh now')
    .action(action(async (_opts: object, command: Command) => {
      const { config, logger } = commandContext(command, 'admin');
      const settings = oauthSettings(config);
      const { createAccessTokenSource } = await import('../producer/access-token.ts');
      const { readTokenFile } = await import('../producer/token-file.ts');
      const source = createAccessTokenSource({ kind: 'oauth2', ...settings }, settings.user, { logger });
      await source.get({ force: true });
      const expiry = readTokenFile(settings.tokenFile).expiry_date;
      process.stdout.write(`Access token refreshed for ${settings.user}; expires ${expiry ? new Date(expiry).toISOString() : 'at an unknown time'}\n`);
    }));

  auth.command('revoke').description('revoke the refresh token at the provider and delete the token file')
    .action(action(async (_opts: object, command: Command) => {
      const { config } = commandContext(command, 'admin');
      const { rmSync } = await import('node:fs');
      const { readTokenFile } = await import('../producer/token-file.ts');
      const { AuthError } = await import('../core/errors.ts');
      const stored = readTokenFile(config.oauth2.tokenFile);
      const token = stored.refresh_token ?? stored.access_token;
      if (token) {
        const res = await fetch(config.oauth2.revokeUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token }) });
        // 400 invalid_token: already revoked or expired, which is what was asked.
        if (!res.ok && res.status !== 400) throw new AuthError(`revocation endpoint answered HTTP ${res.status}; the token file was kept`);
      }
      rmSync(config.oauth2.tokenFile, { force: true });
      process.stdout.write(`Revoked and deleted ${config.oauth2.tokenFile}\n`);
    }));
}
