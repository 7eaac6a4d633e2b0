import type { Command } from 'commander';
import { NotImplementedError } from '../core/errors.ts';
import { action } from './run-command.ts';

export function registerAuth(program: Command): void {
  const auth = program.command('auth').description('OAuth2 credentials of the IMAP account');
  auth.command('setup').description('interactive consent in a browser (loopback redirect); writes OAUTH2_TOKEN_FILE mode 0600')
    .action(action(() => { throw new NotImplementedError('auth setup'); }));
  auth.command('info').description('show token state: account, scopes, expiry (never the token)')
    .action(action(() => { throw new NotImplementedError('auth info'); }));
  auth.command('refresh').description('force an access-token refresh now')
    .action(action(() => { throw new NotImplementedError('auth refresh'); }));
  auth.command('revoke').description('revoke the refresh token at the provider and delete the token file')
    .action(action(() => { throw new NotImplementedError('auth revoke'); }));
}
