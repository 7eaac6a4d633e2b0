// Turns the environment into the typed, frozen configuration. Nothing else in mailstream reads
// process.env. The first problem found stops start-up with a ConfigError naming the variable; a
// secret's value is never part of the message.
import { accessSync, constants } from 'node:fs';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { ConfigError } from '../core/errors.ts';
import { loadAccounts, singleAccount, type AccountConfig } from './accounts.ts';
import { ENDPOINT_SETTINGS, resolveProvider, type Explicit, type OAuthProvider } from './oauth-providers.ts';
import type { SearchKey } from './search-filter.ts';
import { SETTINGS, type Role, type SettingName, type SettingSpec } from './settings.ts';

export type StartFrom = { kind: 'all' } | { kind: 'now' } | { kind: 'date'; date: Date };

/** BLOB_STORE_URL and the settings of its kind. */
export type BlobStoreConfig =
  | { kind: 'none' }
  | { kind: 'file'; dir: string; fsync: boolean }
  | { kind: 's3'; bucket: string; prefix: string; endpoint: string | undefined; region: string | undefined; forcePathStyle: boolean };

export interface Config {
  role: Role;
  prefix: string;
  redis: { url: string; clusterNodes: string[] | undefined };
  http: { host: string; port: number };
  logLevel: string;
  shutdownTimeoutMs: number;
  accountsFile: string | undefined;
  /** Every account this deployment serves: the accounts file's, or the one IMAP_USER names. */
  accounts: AccountConfig[];
  /** Scale-out: leases on mailboxes shared by several producers. */
  leases: { ttlMs: number; producerId: string };
  imap: {
    host: string;
    port: number;
    secure: boolean;
    tlsCaFile: string | undefined;
    user: string;
    auth: 'oauth2' | 'password';
    password: string | undefined;
    mailboxes: string[];
    idle: boolean;
    pollIntervalMs: number;
    idleRestartMs: number;
    noopIntervalMs: number;
    fetchBatchSize: number;
    maxConnections: number;
  };
  oauth2: {
    /** Fills in the endpoints, scope and IMAP host below unless set explicitly. */
    provider: OAuthProvider;
    tenant: string;
    clientId: string | undefined;
    clientSecret: string | undefined;
    tokenFile: string;
    tokenUrl: string;
    authUrl: string;
    /** Undefined: the provider has none (Microsoft). */
    revokeUrl: string | undefined;
    scope: string;
    serviceAccountFile: string | undefined;
    /** What was set explicitly (IMAP_HOST, OAUTH2_*_URL, OAUTH2_SCOPE): an account of the accounts file with the same provider inherits it. */
    explicit: Explicit;
  };
  producer: {
    startFrom: StartFrom;
    maxBodyBytes: number;
    parseThreads: number;
    streamMaxLen: number;
    maxConsumerLag: number;
    uidValidityResync: 'since-last' | 'full';
    uidValidityMarginMs: number;
    ingestedRetentionMs: number;
    reconnectBaseMs: number;
    reconnectMaxMs: number;
    /** Waits after the IMAP server throttles us or a quota is used up. */
    throttledWaitMs: number;
    throttledMaxWaitMs: number;
    overQuotaWaitMs: number;
    /** Logins per second over the whole process, and mailbox connections per IMAP host (0: no cap). */
    connectRate: number;
    maxConnectionsPerHost: number;
    faultInjection: string | undefined;
    /** FETCH_FILTER, parsed: what a backfill reads. */
    fetchFilter: SearchKey | undefined;
    /** TRACK_CHANGES and how often a server without CONDSTORE/QRESYNC is scanned. */
    trackChanges: { flags: boolean; labels: boolean; deletes: boolean; scanIntervalMs: number };
    /** Share of Redis maxmemory at which fetching pauses. */
    redisMemoryHighWatermark: number;
  };
  blobs: {
    store: BlobStoreConfig;
    /** With a store: text/html beyond this many bytes stay in the store, their start in the entry. */
    inlineBodyBytes: number;
  };
  worker: {
    sinkUrl: string;
    webhookSecret: string | undefined;
    webhookTimeoutMs: number;
    /** What sinks get of text and html a blob store holds whole: read back (whole) or the entry's start (inline). */
    bodies: 'whole' | 'inline';
    /** Read-back bodies are cut to this (MAX_BODY_BYTES, as the producer cuts without a store). */
    maxBodyBytes: number;
    webhookAttachments: 'urls' | 'refs' | 'inline';
    webhookInlineMaxBytes: number;
    blobUrlTtlSeconds: number;
    maxAttempts: number;
    /** Hand-outs ending with no outcome (a worker dying on the email) before the DLQ. */
    maxUnfinishedDeliveries: number;
    retryBaseMs: number;
    retryMaxMs: number;
    concurrency: number;
    readBatchSize: number;
    readBlockMs: number;
    /** How often every account stream is looked at, signalled or not (WORKER_SWEEP_MS). */
    sweepMs: number;
    claimIdleMs: number;
    claimIntervalMs: number;
    dedupeTtlSeconds: number;
    group: string;
    consumerName: string;
  };
  /** Values of secret settings, so the logger can scrub them wherever they turn up. */
  secrets: string[];
}

type Parsed = { [K in SettingName]: unknown };

function parseSettings(env: Record<string, string | undefined>): Parsed {
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(SETTINGS)) {
    const raw = env[name];
    const value = raw === undefined || raw === '' ? ('default' in spec ? spec.default : undefined) : raw;
    if (value === undefined) { out[name] = undefined; continue; }
    const result = spec.schema.safeParse(value);
    if (!result.success) {
      const problem = result.error.issues[0]?.message ?? 'invalid value';
      // A secret's value is never echoed; neither is any value: the operator knows what they set.
      throw new ConfigError(name, problem);
    }
    out[name] = result.data;
  }
  return out as Parsed;
}

/** Every setting the role needs (SettingSpec.requiredFor) is there, or start-up stops naming the first missing. */
function checkRequired(role: Role, s: Parsed): void {
  for (const [name, spec] of Object.entries(SETTINGS) as Array<[SettingName, SettingSpec]>) {
    if (!spec.requiredFor?.includes(role) || s[name] !== undefined) continue;
    if (spec.unlessSet !== undefined && s[spec.unlessSet as SettingName] !== undefined) continue;
    throw new ConfigError(name, `required for the ${role}${spec.unlessSet ? ` (unless ${spec.unlessSet} is set)` : ''}: ${spec.doc}`);
  }
}

function require<T>(name: SettingName, value: T | undefined, why: string): T {
  if (value === undefined) throw new ConfigError(name, `required ${why}`);
  return value;
}

function readable(name: SettingName, path: string | undefined): void {
  if (path === undefined) return;
  try { accessSync(path, constants.R_OK); } catch { throw new ConfigError(name, `cannot read file ${path}`); }
}

const DEFAULT_PORTS: Record<Role, number> = { producer: 9464, worker: 9465, admin: 0 };

export function loadConfig(role: Role, env: Record<string, string | undefined>): Readonly<Config> {
  const s = parseSettings(env);
  checkRequired(role, s);
  const str = (n: SettingName) => s[n] as string | undefined;
  const num = (n: SettingName) => s[n] as number;

  const accountsFile = str('ACCOUNTS_FILE');
  readable('ACCOUNTS_FILE', accountsFile);
  const user = str('IMAP_USER') ?? '';

  const auth = s.IMAP_AUTH as 'oauth2' | 'password';
  const serviceAccountFile = str('OAUTH2_SERVICE_ACCOUNT_FILE');
  if (role === 'producer' && accountsFile === undefined) {
    if (auth === 'password') require('IMAP_PASSWORD', str('IMAP_PASSWORD'), 'when IMAP_AUTH=password');
    if (auth === 'oauth2' && serviceAccountFile === undefined) {
      require('OAUTH2_CLIENT_ID', str('OAUTH2_CLIENT_ID'), 'when IMAP_AUTH=oauth2');
      require('OAUTH2_CLIENT_SECRET', str('OAUTH2_CLIENT_SECRET'), 'when IMAP_AUTH=oauth2');
    }
    readable('IMAP_TLS_CA_FILE', str('IMAP_TLS_CA_FILE'));
    readable('OAUTH2_SERVICE_ACCOUNT_FILE', serviceAccountFile);
  }
  const provider = s.OAUTH2_PROVIDER as OAuthProvider;
  const explicit: Explicit = {
    imapHost: str('IMAP_HOST'), tokenUrl: str('OAUTH2_TOKEN_URL'), authUrl: str('OAUTH2_AUTH_URL'), scope: str('OAUTH2_SCOPE'), revokeUrl: str('OAUTH2_REVOKE_URL'),
  };
  const { endpoints, missing } = resolveProvider(provider, s.OAUTH2_TENANT as string, explicit);
  if (role === 'producer' && accountsFile === undefined) {
    // `custom` has no preset. The consent endpoint is asked for by `auth setup`, where it is used.
    const needed: Array<keyof Explicit> = auth === 'oauth2' ? ['imapHost', 'tokenUrl', 'scope'] : ['imapHost'];
    const unset = missing.find((field) => needed.includes(field));
    if (unset) throw new ConfigError(ENDPOINT_SETTINGS[unset], `required when OAUTH2_PROVIDER=${provider}`);
  }
  if (provider === 'microsoft' && serviceAccountFile !== undefined) throw new ConfigError('OAUTH2_SERVICE_ACCOUNT_FILE', 'a service account (domain-wide delegation) is Google\'s; not with OAUTH2_PROVIDER=microsoft');
  const sinkUrl = str('SINK_URL') ?? '';
  if (num('RETRY_MAX_MS') < num('RETRY_BASE_MS')) throw new ConfigError('RETRY_MAX_MS', 'must be at least RETRY_BASE_MS');

  const startFromRaw = s.START_FROM as string;
  const startFrom: StartFrom = startFromRaw === 'all' ? { kind: 'all' } : startFromRaw === 'now' ? { kind: 'now' } : { kind: 'date', date: new Date(`${startFromRaw}T00:00:00Z`) };

  const secrets = Object.entries(SETTINGS)
    .filter(([, spec]) => 'secret' in spec && spec.secret)
    .map(([name]) => str(name as SettingName))
    .filter((v): v is string => typeof v === 'string' && v.length >= 4);
  const redisPassword = new URL(s.REDIS_URL as string).password;
  if (redisPassword) secrets.push(decodeURIComponent(redisPassword));

  const imap: Config['imap'] = {
    host: endpoints.imapHost ?? '',
    port: num('IMAP_PORT'),
    secure: s.IMAP_SECURE as boolean,
    tlsCaFile: str('IMAP_TLS_CA_FILE'),
    user,
    auth,
    password: str('IMAP_PASSWORD'),
    mailboxes: s.IMAP_MAILBOXES as string[],
    idle: s.IMAP_IDLE as boolean,
    pollIntervalMs: num('POLL_INTERVAL_MS'),
    idleRestartMs: num('IDLE_RESTART_MS'),
    noopIntervalMs: num('NOOP_INTERVAL_MS'),
    fetchBatchSize: num('FETCH_BATCH_SIZE'),
    maxConnections: num('IMAP_MAX_CONNECTIONS'),
  };
  const oauth2: Config['oauth2'] = {
    clientId: str('OAUTH2_CLIENT_ID'),
    clientSecret: str('OAUTH2_CLIENT_SECRET'),
    tokenFile: str('OAUTH2_TOKEN_FILE') ?? `./tokens/${user || 'account'}.json`,
    provider,
    tenant: s.OAUTH2_TENANT as string,
    tokenUrl: endpoints.tokenUrl ?? '',
    authUrl: endpoints.authUrl ?? '',
    revokeUrl: endpoints.revokeUrl,
    scope: endpoints.scope ?? '',
    serviceAccountFile,
    explicit,
  };
  let accounts: AccountConfig[] = user ? [singleAccount({ imap, oauth2 })] : [];
  if (accountsFile !== undefined) {
    const loaded = loadAccounts(accountsFile, { base: { imap, oauth2 }, env, resolveSecrets: role === 'producer' });
    accounts = loaded.accounts;
    secrets.push(...loaded.secrets);
  }

  const config: Config = {
    role,
    prefix: s.MAILSTREAM_PREFIX as string,
    redis: { url: s.REDIS_URL as string, clusterNodes: s.REDIS_CLUSTER_NODES as string[] | undefined },
    http: { host: s.HTTP_HOST as string, port: (s.HTTP_PORT as number | undefined) ?? DEFAULT_PORTS[role] },
    logLevel: s.LOG_LEVEL as string,
    shutdownTimeoutMs: num('SHUTDOWN_TIMEOUT_MS'),
    accountsFile,
    accounts,
    leases: {
      ttlMs: num('LEASE_TTL_MS'),
      producerId: str('PRODUCER_ID') ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`,
    },
    imap,
    oauth2,
    producer: {
      startFrom,
      maxBodyBytes: num('MAX_BODY_BYTES'),
      parseThreads: num('PARSE_THREADS'),
      streamMaxLen: num('STREAM_MAX_LEN'),
      maxConsumerLag: num('MAX_CONSUMER_LAG'),
      uidValidityResync: s.UIDVALIDITY_RESYNC as 'since-last' | 'full',
      uidValidityMarginMs: num('UIDVALIDITY_MARGIN_HOURS') * 3_600_000,
      ingestedRetentionMs: num('INGESTED_RETENTION_DAYS') * 86_400_000,
      reconnectBaseMs: num('RECONNECT_BASE_MS'),
      reconnectMaxMs: num('RECONNECT_MAX_MS'),
      throttledWaitMs: num('IMAP_THROTTLED_WAIT_MS'),
      throttledMaxWaitMs: num('IMAP_THROTTLED_MAX_WAIT_MS'),
      overQuotaWaitMs: num('IMAP_OVER_QUOTA_WAIT_MS'),
      connectRate: num('IMAP_CONNECT_RATE'),
      maxConnectionsPerHost: num('IMAP_MAX_CONNECTIONS_PER_HOST'),
      faultInjection: str('FAULT_INJECTION'),
      fetchFilter: s.FETCH_FILTER as SearchKey | undefined,
      trackChanges: {
        flags: (s.TRACK_CHANGES as string[]).includes('flags'),
        labels: (s.TRACK_CHANGES as string[]).includes('labels'),
        deletes: (s.TRACK_CHANGES as string[]).includes('deletes'),
        scanIntervalMs: num('TRACK_CHANGES_SCAN_MS'),
      },
      redisMemoryHighWatermark: num('REDIS_MEMORY_HIGH_WATERMARK'),
    },
    blobs: { store: blobStoreConfig(s.BLOB_STORE_URL as string, s), inlineBodyBytes: num('INLINE_BODY_BYTES') },
    worker: {
      sinkUrl,
      webhookSecret: str('WEBHOOK_SECRET'),
      webhookTimeoutMs: num('WEBHOOK_TIMEOUT_MS'),
      bodies: s.SINK_BODIES as 'whole' | 'inline',
      maxBodyBytes: num('MAX_BODY_BYTES'),
      webhookAttachments: s.WEBHOOK_ATTACHMENTS as 'urls' | 'refs' | 'inline',
      webhookInlineMaxBytes: num('WEBHOOK_INLINE_MAX_BYTES'),
      blobUrlTtlSeconds: num('BLOB_URL_TTL_S'),
      maxAttempts: num('MAX_ATTEMPTS'),
      maxUnfinishedDeliveries: num('MAX_UNFINISHED_DELIVERIES'),
      retryBaseMs: num('RETRY_BASE_MS'),
      retryMaxMs: num('RETRY_MAX_MS'),
      concurrency: num('WORKER_CONCURRENCY'),
      readBatchSize: num('READ_BATCH_SIZE'),
      readBlockMs: num('READ_BLOCK_MS'),
      sweepMs: num('WORKER_SWEEP_MS'),
      claimIdleMs: num('CLAIM_IDLE_MS'),
      claimIntervalMs: num('CLAIM_INTERVAL_MS'),
      dedupeTtlSeconds: num('DEDUPE_TTL_SECONDS'),
      group: s.CONSUMER_GROUP as string,
      consumerName: str('CONSUMER_NAME') ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`,
    },
    secrets,
  };
  return deepFreeze(config);
}

/** The URL was checked by its schema; here it becomes the store's settings. */
function blobStoreConfig(url: string, s: Parsed): BlobStoreConfig {
  if (url === 'none') return { kind: 'none' };
  const u = new URL(url);
  if (u.protocol === 'file:') return { kind: 'file', dir: decodeURIComponent(u.pathname).replace(/\/+$/, ''), fsync: s.BLOB_FSYNC as boolean };
  const prefix = decodeURIComponent(u.pathname).replace(/^\/+/, '');
  return {
    kind: 's3',
    bucket: u.host,
    prefix: prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`,
    endpoint: s.S3_ENDPOINT as string | undefined,
    region: s.S3_REGION as string | undefined,
    forcePathStyle: s.S3_FORCE_PATH_STYLE as boolean,
  };
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !(value instanceof Date)) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
