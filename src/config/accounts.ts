// The accounts file (ACCOUNTS_FILE): several mailboxes' accounts for one deployment, read by the
// producer (what to poll) and the worker (which streams to consume). JSON, one entry per account,
// with optional shared `defaults`. Secrets are references only, `{ "env": "VAR" }` or
// `{ "file": "/path" }`: the file can then be checked in or shown in a ticket without leaking a
// password, and rotating a secret does not touch it.
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../core/errors.ts';
import type { Config } from './load.ts';
import { OAUTH2_PROVIDERS, resolveProvider, TENANT_PATTERN, type Explicit } from './oauth-providers.ts';

/** One account as the producer and worker use it: the global IMAP/OAuth2 tuning plus its own. */
export interface AccountConfig {
  /** Names the stream `<prefix>:{<id>}:emails`; the email address unless the file says otherwise. */
  id: string;
  imap: Config['imap'];
  oauth2: Config['oauth2'];
}

const SETTING = 'ACCOUNTS_FILE';

const secretRef = z.union([
  z.strictObject({ env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name') }),
  z.strictObject({ file: z.string().min(1) }),
], { error: 'secrets are given by reference: {"env":"VAR"} or {"file":"/path"}, never inline' });
type SecretRef = z.infer<typeof secretRef>;

const clientId = z.union([z.string().min(1), secretRef]);

const shared = {
  host: z.string().min(1).optional(),
  port: z.number().int().min(1).max(65535).optional(),
  secure: z.boolean().optional(),
  tlsCaFile: z.string().min(1).optional(),
  auth: z.enum(['oauth2', 'password']).optional(),
  mailboxes: z.array(z.string().min(1)).min(1).optional(),
  /** Fills in the endpoints, scope and host of the account, as OAUTH2_PROVIDER does. */
  provider: z.enum(OAUTH2_PROVIDERS).optional(),
  tenant: z.string().regex(TENANT_PATTERN, 'expected common, organizations, consumers, a tenant id or a domain').optional(),
  oauth2: z.strictObject({
    clientId: clientId.optional(),
    clientSecret: secretRef.optional(),
    tokenFile: z.string().min(1).optional(),
    serviceAccountFile: z.string().min(1).optional(),
    tokenUrl: z.url({ protocol: /^https?$/ }).optional(),
    authUrl: z.url({ protocol: /^https?$/ }).optional(),
    revokeUrl: z.url({ protocol: /^https?$/ }).optional(),
    scope: z.string().min(1).optional(),
  }).optional(),
};

const accountSchema = z.strictObject({
  ...shared,
  id: z.string().regex(/^[^{}\s]+$/, 'may not contain { } or spaces (it is the stream\'s hash tag)').optional(),
  user: z.string().min(1),
  password: secretRef.optional(),
});

const fileSchema = z.strictObject({
  defaults: z.strictObject(shared).optional(),
  accounts: z.array(accountSchema).min(1, 'must list at least one account'),
});

export interface LoadAccountsOptions {
  /** Global settings each account starts from (IMAP_*, OAUTH2_*). */
  base: Pick<Config, 'imap' | 'oauth2'>;
  env: Record<string, string | undefined>;
  /**
   * Read the referenced secrets now: `true` for every account (the producer), an account id for
   * that one only (`auth --account`), `false` for none (the worker and other admin commands).
   */
  resolveSecrets: boolean | string;
}

export interface LoadedAccounts {
  accounts: AccountConfig[];
  /** Resolved secret values, for the logger to scrub. */
  secrets: string[];
}

function fail(problem: string): never {
  throw new ConfigError(SETTING, problem);
}

function parseFile(path: string): z.infer<typeof fileSchema> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    fail(`cannot read ${path} as JSON: ${(err as Error).message}`);
  }
  const result = fileSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    // The path locates the problem (`accounts[2].password`); the value itself is never echoed.
    const where = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '');
    fail(`${path}: ${where || 'file'}: ${issue.message}`);
  }
  return result.data;
}

export function loadAccounts(path: string, options: LoadAccountsOptions): LoadedAccounts {
  const file = parseFile(path);
  const dir = dirname(resolve(path));
  // Paths inside the file are relative to the file, so it reads the same from any working dir.
  const fromFile = (p: string | undefined) => (p === undefined ? undefined : isAbsolute(p) ? p : resolve(dir, p));
  const secrets: string[] = [];
  const reveal = (ref: SecretRef | undefined, where: string, resolving: boolean): string | undefined => {
    if (ref === undefined || !resolving) return undefined;
    const value = readSecret(ref, where, options.env, fromFile);
    if (value.length >= 4) secrets.push(value);
    return value;
  };

  const defaults = file.defaults ?? {};
  const seen = new Set<string>();
  const accounts = file.accounts.map((entry, i): AccountConfig => {
    const where = `accounts[${i}]`;
    const id = entry.id ?? entry.user;
    if (/[{}]/.test(id)) fail(`${where}.user: may not contain { or } (it names the stream); set an id`);
    if (seen.has(id)) fail(`${where}: account ${id} is listed twice`);
    seen.add(id);
    const resolving = options.resolveSecrets === true || options.resolveSecrets === id || options.resolveSecrets === entry.user;
    const mailboxes = entry.mailboxes ?? defaults.mailboxes ?? options.base.imap.mailboxes;
    if (new Set(mailboxes).size !== mailboxes.length) fail(`${where}.mailboxes: a mailbox is listed twice`);
    const auth = entry.auth ?? defaults.auth ?? options.base.imap.auth;
    const oauth2 = { ...defaults.oauth2, ...entry.oauth2 };
    if (resolving) {
      if (auth === 'password' && !entry.password) fail(`${where}.password: required when auth is password`);
      if (auth === 'oauth2' && !oauth2.serviceAccountFile && !options.base.oauth2.serviceAccountFile) {
        if (!oauth2.clientId && !options.base.oauth2.clientId) fail(`${where}.oauth2.clientId: required when auth is oauth2`);
        if (!oauth2.clientSecret && !options.base.oauth2.clientSecret) fail(`${where}.oauth2.clientSecret: required when auth is oauth2`);
      }
    }
    const clientIdValue = typeof oauth2.clientId === 'string' ? oauth2.clientId : reveal(oauth2.clientId, `${where}.oauth2.clientId`, resolving);
    const provider = entry.provider ?? defaults.provider ?? options.base.oauth2.provider;
    const tenant = entry.tenant ?? defaults.tenant ?? options.base.oauth2.tenant;
    // The environment's explicit endpoints belong to OAUTH2_PROVIDER: another provider's account
    // starts from that provider's preset, and the file may override either.
    const inherited: Explicit = provider === options.base.oauth2.provider ? options.base.oauth2.explicit : {};
    const explicit: Explicit = {
      imapHost: entry.host ?? defaults.host ?? inherited.imapHost,
      tokenUrl: oauth2.tokenUrl ?? inherited.tokenUrl,
      authUrl: oauth2.authUrl ?? inherited.authUrl,
      revokeUrl: oauth2.revokeUrl ?? inherited.revokeUrl,
      scope: oauth2.scope ?? inherited.scope,
    };
    const { endpoints, missing } = resolveProvider(provider, tenant, explicit);
    // As for the environment: the consent endpoint is asked for by `auth setup`, where it is used.
    const unset = missing.find((field) => field === 'imapHost' || (auth === 'oauth2' && field !== 'authUrl'));
    if (resolving && provider === 'microsoft' && auth === 'oauth2' && (oauth2.serviceAccountFile ?? options.base.oauth2.serviceAccountFile)) fail(`${where}.oauth2.serviceAccountFile: a service account is Google's; not with provider microsoft`);
    if (resolving && unset) fail(`${where}.${unset === 'imapHost' ? 'host' : `oauth2.${unset}`}: required when provider is ${provider}`);
    return {
      id,
      imap: {
        ...options.base.imap,
        host: endpoints.imapHost ?? '',
        port: entry.port ?? defaults.port ?? options.base.imap.port,
        secure: entry.secure ?? defaults.secure ?? options.base.imap.secure,
        tlsCaFile: fromFile(entry.tlsCaFile ?? defaults.tlsCaFile) ?? options.base.imap.tlsCaFile,
        user: entry.user,
        auth,
        password: reveal(entry.password, `${where}.password`, resolving),
        mailboxes,
      },
      oauth2: {
        ...options.base.oauth2,
        clientId: clientIdValue ?? options.base.oauth2.clientId,
        clientSecret: reveal(oauth2.clientSecret, `${where}.oauth2.clientSecret`, resolving) ?? options.base.oauth2.clientSecret,
        tokenFile: fromFile(oauth2.tokenFile) ?? `./tokens/${entry.user}.json`,
        serviceAccountFile: fromFile(oauth2.serviceAccountFile) ?? options.base.oauth2.serviceAccountFile,
        provider,
        tenant,
        tokenUrl: endpoints.tokenUrl ?? '',
        authUrl: endpoints.authUrl ?? '',
        revokeUrl: endpoints.revokeUrl,
        scope: endpoints.scope ?? '',
        explicit,
      },
    };
  });
  return { accounts, secrets };
}

function readSecret(ref: SecretRef, where: string, env: Record<string, string | undefined>, fromFile: (p: string) => string | undefined): string {
  if ('env' in ref) {
    const value = env[ref.env];
    if (value === undefined || value === '') fail(`${where}: environment variable ${ref.env} is not set`);
    return value;
  }
  const path = fromFile(ref.file)!;
  let value: string;
  try {
    value = readFileSync(path, 'utf8').replace(/\r?\n$/, '');
  } catch {
    fail(`${where}: cannot read secret file ${path}`);
  }
  if (value === '') fail(`${where}: secret file ${path} is empty`);
  return value;
}

/** The single account described by IMAP_USER and the IMAP_* / OAUTH2_* settings. */
export function singleAccount(base: Pick<Config, 'imap' | 'oauth2'>): AccountConfig {
  return { id: base.imap.user, imap: base.imap, oauth2: base.oauth2 };
}
