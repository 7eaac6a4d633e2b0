// The OAuth2 token file: JSON credentials as google-auth-library writes them (at least
// refresh_token). Written atomically (temporary file + rename) and mode 0600 from the first byte.
import { mkdirSync, readFileSync, renameSync, writeFileSync, chmodSync } from 'node:fs';
import { dirname, join, basename } from 'node:path';
import { randomBytes } from 'node:crypto';
import { AuthError } from '../core/errors.ts';

export interface StoredCredentials {
  refresh_token?: string | null;
  access_token?: string | null;
  expiry_date?: number | null;
  scope?: string;
  token_type?: string | null;
  id_token?: string | null;
  /** The account the consent was given for, when known. */
  account?: string;
}

export function readTokenFile(path: string): StoredCredentials {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new AuthError(`no OAuth2 token file at ${path} (OAUTH2_TOKEN_FILE): run \`mailstream auth setup\``);
  }
  try {
    return JSON.parse(text) as StoredCredentials;
  } catch {
    throw new AuthError(`OAuth2 token file ${path} is not JSON: run \`mailstream auth setup\` again`);
  }
}

export function writeTokenFile(path: string, credentials: StoredCredentials): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString('hex')}.tmp`);
  writeFileSync(tmp, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600); // the umask cannot widen it, but an existing file's mode could
  renameSync(tmp, path);
}
