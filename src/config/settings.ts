// Every setting mailstream reads, with its default and one line on what it does. This table is
// the single source: the loader validates it, `.env.example` is checked against it by a test.
import { z } from 'zod';
import { OAUTH2_PROVIDERS, TENANT_PATTERN } from './oauth-providers.ts';
import { parseSearchFilter } from './search-filter.ts';

export type Role = 'producer' | 'worker' | 'admin';

export interface SettingSpec {
  /** Parser for the raw string; its output lands in the typed config. */
  schema: z.ZodType;
  /** Default as the operator would write it (undefined: no default). */
  default?: string;
  doc: string;
  /** A secret: never echoed in errors, logs or `status`. */
  secret?: boolean;
  /** Roles for which the setting must be present (when no default); the loader checks it. */
  requiredFor?: Role[];
  /** Not required when this other setting is set (ACCOUNTS_FILE replaces the single-account ones). */
  unlessSet?: string;
}

const bool = z.enum(['true', 'false', '1', '0', 'yes', 'no'], {
  error: 'expected true or false',
}).transform((v) => v === 'true' || v === '1' || v === 'yes');

const int = (min: number, max: number) =>
  z.string().regex(/^-?\d+$/, 'expected a whole number').transform(Number)
    .pipe(z.number().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));

const port = int(0, 65535);
const rate = z.string().regex(/^\d+(\.\d+)?$/, 'expected a number per second, e.g. 10 or 0.5').transform(Number)
  .pipe(z.number().min(0.1, 'must be at least 0.1').max(10_000, 'must be at most 10000'));
const nonEmpty = z.string().trim().min(1, 'must not be empty');

const redisUrl = z.string().refine((v) => {
  try { const u = new URL(v); return u.protocol === 'redis:' || u.protocol === 'rediss:'; } catch { return false; }
}, 'expected a redis:// or rediss:// URL');

const httpUrl = z.string().refine((v) => {
  try { const u = new URL(v); return u.protocol === 'http:' || u.protocol === 'https:'; } catch { return false; }
}, 'expected an http:// or https:// URL');

const sinkUrl = z.string().refine((v) => {
  try { return ['file:', 'http:', 'https:', 'postgres:', 'postgresql:', 'module:'].includes(new URL(v).protocol); } catch { return false; }
}, 'expected file:///path.jsonl, http(s)://..., postgres://... or module:///path/handler.js');

const startFrom = z.string().refine((v) => v === 'all' || v === 'now' || (/^\d{4}-\d{2}-\d{2}$/.test(v) && !Number.isNaN(Date.parse(v))),
  'expected all, now or a date YYYY-MM-DD');

const fraction = z.string().regex(/^(0?\.\d+|1(\.0*)?)$/, 'expected a share between 0 and 1, e.g. 0.8').transform(Number)
  .pipe(z.number().gt(0, 'must be above 0'));

const blobStoreUrl = z.string().refine((v) => {
  if (v === 'none') return true;
  try { const u = new URL(v); return (u.protocol === 'file:' && u.pathname.length > 1 && !u.host) || (u.protocol === 's3:' && u.host.length > 0); } catch { return false; }
}, 'expected none, file:///absolute/dir or s3://bucket/prefix');

const list = z.string().transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean))
  .pipe(z.array(z.string()).min(1, 'must name at least one'));

const TRACKABLE = ['flags', 'labels', 'deletes'] as const;
const trackChanges = z.string().transform((v, ctx) => {
  const parts = v.split(',').map((p) => p.trim().toLowerCase()).filter(Boolean);
  if (parts.length === 1 && (parts[0] === 'none' || parts[0] === 'off')) return [];
  const unknown = parts.find((p) => !(TRACKABLE as readonly string[]).includes(p));
  if (unknown !== undefined || parts.length === 0) {
    ctx.addIssue({ code: 'custom', message: `expected none, or a comma-separated list of ${TRACKABLE.join(', ')}${unknown ? ` (not ${unknown})` : ''}` });
    return z.NEVER;
  }
  return [...new Set(parts)] as Array<typeof TRACKABLE[number]>;
});

const searchFilter = z.string().transform((v, ctx) => {
  try {
    return parseSearchFilter(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: `not an IMAP SEARCH expression: ${(err as Error).message}` });
    return z.NEVER;
  }
});

const MINUTE = 60_000;

export const SETTINGS = {
  // --- shared ---
  REDIS_URL: { schema: redisUrl, default: 'redis://127.0.0.1:6379', doc: 'Redis server: redis:// or rediss:// (TLS), with ACL user and password if any', secret: false },
  REDIS_CLUSTER_NODES: { schema: list, doc: 'comma-separated host:port of Redis Cluster nodes; when set, REDIS_URL only supplies credentials and TLS' },
  MAILSTREAM_PREFIX: { schema: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'expected letters, digits, _ . or -'), default: 'mailstream', doc: 'prefix of every Redis key' },
  HTTP_HOST: { schema: nonEmpty, default: '127.0.0.1', doc: 'address of the health and metrics listener' },
  HTTP_PORT: { schema: port, doc: 'port of the health and metrics listener (default: producer 9464, worker 9465; 0 picks a free one)' },
  LOG_LEVEL: { schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { error: 'expected fatal, error, warn, info, debug, trace or silent' }), default: 'info', doc: 'pino log level' },
  SHUTDOWN_TIMEOUT_MS: { schema: int(0, 10 * MINUTE), default: '30000', doc: 'how long a SIGTERM waits for work in hand before the process exits anyway' },
  ACCOUNTS_FILE: { schema: nonEmpty, doc: 'JSON file listing several accounts (see runbooks/scaling.md); replaces the single-account IMAP_* and OAUTH2_* settings' },
  LEASE_TTL_MS: { schema: int(1000, 10 * MINUTE), default: '15000', doc: 'a producer holds each mailbox through a lease of this length, renewed every third of it; a dead producer\'s mailboxes are taken over after at most this long' },
  PRODUCER_ID: { schema: z.string().regex(/^[A-Za-z0-9_.:@-]+$/, 'expected letters, digits, _ . : @ or -'), doc: 'this producer\'s name in leases and the producer registry (default host-pid-random, unique per process)' },

  // --- producer: IMAP ---
  IMAP_HOST: { schema: nonEmpty, doc: 'IMAP server (default: the OAUTH2_PROVIDER\'s, imap.gmail.com for google, outlook.office365.com for microsoft; required for custom)' },
  IMAP_PORT: { schema: int(1, 65535), default: '993', doc: 'IMAP port' },
  IMAP_SECURE: { schema: bool, default: 'true', doc: 'implicit TLS (true) or plain/STARTTLS (false)' },
  IMAP_TLS_CA_FILE: { schema: nonEmpty, doc: 'extra CA certificate (PEM) to trust, for private servers; certificate checks are never turned off' },
  IMAP_USER: { schema: nonEmpty, requiredFor: ['producer', 'worker'], unlessSet: 'ACCOUNTS_FILE', doc: 'account (email address); also names the stream' },
  IMAP_AUTH: { schema: z.enum(['oauth2', 'password'], { error: 'expected oauth2 or password' }), default: 'oauth2', doc: 'oauth2 (XOAUTH2, Gmail) or password' },
  IMAP_PASSWORD: { schema: nonEmpty, secret: true, doc: 'password when IMAP_AUTH=password' },
  IMAP_MAILBOXES: { schema: list, default: 'INBOX', doc: 'comma-separated mailboxes, one IMAP connection each; * is every selectable mailbox but those SPECIAL-USE marks \\Trash, \\Junk or \\Drafts, and a name with * or % a pattern (Archive/*; % stops at the hierarchy separator), listed at start and every 10 minutes' },
  IMAP_IDLE: { schema: bool, default: 'true', doc: 'wait for new mail with IMAP IDLE; false polls every POLL_INTERVAL_MS' },
  POLL_INTERVAL_MS: { schema: int(100, 24 * 60 * MINUTE), default: '60000', doc: 'polling period without IDLE, and the periodic re-check with IDLE' },
  IDLE_RESTART_MS: { schema: int(1000, 29 * MINUTE), default: String(28 * MINUTE), doc: 'IDLE is re-issued at least this often (RFC 9051 asks for under 30 minutes)' },
  NOOP_INTERVAL_MS: { schema: int(1000, 60 * MINUTE), default: String(2 * MINUTE), doc: 'liveness check of an idle connection; a NOOP that does not answer triggers a reconnect' },
  FETCH_BATCH_SIZE: { schema: int(1, 5000), default: '200', doc: 'messages fetched and appended per batch' },
  IMAP_MAX_CONNECTIONS: { schema: int(1, 15), default: '10', doc: 'connections this producer opens per account at most (Gmail allows about 15)' },
  IMAP_CONNECT_RATE: { schema: rate, default: '10', doc: 'IMAP logins a producer process starts per second at most, over all its mailboxes (first connects and reconnects; a burst of up to 5)' },
  IMAP_MAX_CONNECTIONS_PER_HOST: { schema: int(0, 1_000_000), default: '0', doc: 'mailbox connections a producer process holds to one IMAP host at most (0: no cap); mailboxes past it wait and take turns: one that hands its connection over rests POLL_INTERVAL_MS, then waits for a slot again, so it is looked at about every POLL_INTERVAL_MS plus its wait in line' },
  START_FROM: { schema: startFrom, default: 'now', doc: 'for a mailbox never seen: all, now, or a date YYYY-MM-DD' },
  MAX_BODY_BYTES: { schema: int(1024, 64 * 1024 * 1024), default: String(1024 * 1024), doc: 'text and html are each cut to this many bytes (with a truncation flag): by the producer without a blob store, by the worker reading them back from the store with one (SINK_BODIES=whole)' },
  PARSE_THREADS: { schema: int(0, 64), default: '0', doc: 'worker threads that parse mail; 0 picks one per spare core' },
  STREAM_MAX_LEN: { schema: int(100, 1_000_000_000), default: '1000000', doc: 'entries kept in the stream; only acknowledged ones are trimmed, and the producer pauses when unconsumed entries reach it' },
  MAX_CONSUMER_LAG: { schema: int(1, 1_000_000_000), default: '100000', doc: 'the producer stops fetching while a consumer group lags by more than this' },
  UIDVALIDITY_RESYNC: { schema: z.enum(['since-last', 'full'], { error: 'expected since-last or full' }), default: 'since-last', doc: 'after a UIDVALIDITY change: re-read from the last ingested date minus the margin, or the whole mailbox' },
  UIDVALIDITY_MARGIN_HOURS: { schema: int(0, 24 * 365), default: '48', doc: 'safety margin for since-last re-syncs' },
  INGESTED_RETENTION_DAYS: { schema: int(1, 3650), default: '90', doc: 'how long the producer remembers ingested keys, to skip them on re-sync' },
  RECONNECT_BASE_MS: { schema: int(10, 10 * MINUTE), default: '1000', doc: 'first wait before the producer reconnects to IMAP after a failure; doubles each failure, with full jitter (anywhere from 0 to the doubled wait)' },
  RECONNECT_MAX_MS: { schema: int(10, 60 * MINUTE), default: String(5 * MINUTE), doc: 'longest wait between IMAP reconnect attempts' },
  IMAP_THROTTLED_WAIT_MS: { schema: int(10, 60 * MINUTE), default: String(MINUTE), doc: 'first wait after the server throttles us ([THROTTLED], [ALERT] such as Gmail\'s "Too many simultaneous connections"); doubles with each refusal in a row, with jitter' },
  IMAP_THROTTLED_MAX_WAIT_MS: { schema: int(10, 24 * 60 * MINUTE), default: String(30 * MINUTE), doc: 'longest wait between logins while the server keeps throttling us' },
  IMAP_OVER_QUOTA_WAIT_MS: { schema: int(10, 24 * 60 * MINUTE), default: String(60 * MINUTE), doc: 'wait after an [OVERQUOTA] answer (Gmail\'s daily download or bandwidth limit) before the next try' },
  FETCH_FILTER: { schema: searchFilter, doc: 'what a backfill reads (first sync, a re-sync after a UIDVALIDITY change, mailbox reset): an IMAP SEARCH expression such as SINCE 1-Jan-2025 NOT FROM "noreply@example.com"; on Gmail also X-GM-RAW "<Gmail search>". New mail is always read whole' },
  TRACK_CHANGES: { schema: trackChanges, default: 'none', doc: 'what happens to a message after it arrived, as entries of their own: none, or any of flags (message.updated), labels (Gmail\'s, message.updated), deletes (message.deleted, and message.moved where a known message turns up again); read with CONDSTORE/QRESYNC where the server has them, else by a scan every TRACK_CHANGES_SCAN_MS' },
  TRACK_CHANGES_SCAN_MS: { schema: int(1000, 24 * 60 * MINUTE), default: String(5 * MINUTE), doc: 'with TRACK_CHANGES on a server without CONDSTORE (flags, labels) or QRESYNC (deletes): how often the producer compares every UID\'s flags and the UID list with what it saw last' },
  FAULT_INJECTION: { schema: z.string().regex(/^(after-fetch|after-blob-writes|after-blobs|after-append|after-change-fetch|after-change-append)(:\d+)?$/, 'expected after-fetch, after-blob-writes, after-blobs, after-append, after-change-fetch or after-change-append, optionally :N (the Nth batch)'), doc: 'testing only: crash the process (SIGKILL) at a named point of the producer: after-fetch, after-blob-writes (blobs written, not yet made durable), after-blobs (blobs durable, entries not appended), after-append, after-change-fetch (changes read, not appended), after-change-append, with :N the Nth batch' },
  REDIS_MEMORY_HIGH_WATERMARK: { schema: fraction, default: '0.8', doc: 'the producer pauses fetching while Redis used_memory is at or above this share of maxmemory (never when maxmemory is 0)' },

  // --- blob store (the producer writes it; readers of the stream fetch from it) ---
  BLOB_STORE_URL: { schema: blobStoreUrl, default: 'none', doc: 'where raw messages, attachments and long bodies go: file:///var/lib/mailstream/blobs, s3://bucket/prefix, or none (entries hold bodies up to MAX_BODY_BYTES and attachment metadata only)' },
  BLOB_FSYNC: { schema: bool, default: 'true', doc: 'file store: sync each batch\'s pack data, then its index commit, before its entries are appended (false: a power cut may lose the newest blobs of entries Redis kept)' },
  INLINE_BODY_BYTES: { schema: int(256, 1024 * 1024), default: '4096', doc: 'with a blob store: text and html longer than this keep their start in the entry (with the truncation flag) and the whole in the store (textRef, htmlRef)' },
  S3_ENDPOINT: { schema: httpUrl, doc: 'S3 API endpoint other than AWS (MinIO, Ceph, ...); credentials come from the AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance role)' },
  S3_REGION: { schema: nonEmpty, doc: 'S3 region (default: the AWS chain\'s, AWS_REGION or the profile\'s)' },
  S3_FORCE_PATH_STYLE: { schema: bool, default: 'false', doc: 'path-style bucket URLs (http://host/bucket/key), as MinIO and most servers other than AWS need' },

  // --- producer: OAuth2 ---
  OAUTH2_CLIENT_ID: { schema: nonEmpty, doc: 'OAuth2 client id (required for IMAP_AUTH=oauth2)' },
  OAUTH2_CLIENT_SECRET: { schema: nonEmpty, secret: true, doc: 'OAuth2 client secret (required for IMAP_AUTH=oauth2)' },
  OAUTH2_TOKEN_FILE: { schema: nonEmpty, doc: 'JSON credentials with at least refresh_token, written mode 0600 (default ./tokens/<IMAP_USER>.json)' },
  OAUTH2_PROVIDER: { schema: z.enum(OAUTH2_PROVIDERS, { error: 'expected google, microsoft or custom' }), default: 'google', doc: 'fills in the endpoints, scope and IMAP_HOST: google (Gmail, Workspace), microsoft (Microsoft 365, Outlook.com), custom (set OAUTH2_TOKEN_URL, OAUTH2_AUTH_URL, OAUTH2_SCOPE and IMAP_HOST)' },
  OAUTH2_TENANT: { schema: z.string().regex(TENANT_PATTERN, 'expected common, organizations, consumers, a tenant id or a domain'), default: 'common', doc: 'microsoft: the Entra tenant in the endpoints (common, organizations, consumers, a tenant id or domain)' },
  OAUTH2_TOKEN_URL: { schema: httpUrl, doc: 'token endpoint (refresh-token, consent and service-account grants); default: the provider\'s (google: https://oauth2.googleapis.com/token)' },
  OAUTH2_AUTH_URL: { schema: httpUrl, doc: 'consent endpoint; default: the provider\'s (google: https://accounts.google.com/o/oauth2/v2/auth)' },
  OAUTH2_REVOKE_URL: { schema: httpUrl, doc: 'revocation endpoint; default: the provider\'s (google: https://oauth2.googleapis.com/revoke; microsoft has none)' },
  OAUTH2_SCOPE: { schema: nonEmpty, doc: 'scope requested at consent; default: the provider\'s (google: https://mail.google.com/, microsoft: https://outlook.office.com/IMAP.AccessAsUser.All offline_access)' },
  OAUTH2_SERVICE_ACCOUNT_FILE: { schema: nonEmpty, doc: 'Google Workspace service-account key (domain-wide delegation) used instead of a refresh token' },

  // --- worker ---
  SINK_URL: { schema: sinkUrl, requiredFor: ['worker'], doc: 'where the worker delivers: file:///path/out.jsonl, http(s)://... (webhook), postgres://..., module:///path/handler.js' },
  WEBHOOK_SECRET: { schema: nonEmpty, secret: true, doc: 'HMAC-SHA256 key of the webhook signature header' },
  WEBHOOK_TIMEOUT_MS: { schema: int(100, 10 * MINUTE), default: '10000', doc: 'timeout of one webhook request' },
  SINK_BODIES: { schema: z.enum(['whole', 'inline'], { error: 'expected whole or inline' }), default: 'whole', doc: 'with a blob store: whole (the worker reads text and html cut in the entry back from textRef/htmlRef, so sinks get them up to MAX_BODY_BYTES as without a store) or inline (sinks get only the start the entry holds, plus the refs)' },
  WEBHOOK_ATTACHMENTS: { schema: z.enum(['urls', 'refs', 'inline'], { error: 'expected urls, refs or inline' }), default: 'urls', doc: 'what the webhook JSON carries for attachments and the raw message: urls (refs plus presigned GET URLs with an S3 store; refs alone with a file store), refs (the refs only), inline (attachments\' content as base64 up to WEBHOOK_INLINE_MAX_BYTES per email, then as urls)' },
  WEBHOOK_INLINE_MAX_BYTES: { schema: int(0, 256 * 1024 * 1024), default: String(10 * 1024 * 1024), doc: 'with WEBHOOK_ATTACHMENTS=inline, attachments go into the JSON while their decoded sizes add up to at most this per email; the others keep their ref (and URL)' },
  BLOB_URL_TTL_S: { schema: int(60, 7 * 24 * 3600), default: '3600', doc: 'how long a presigned blob URL in a webhook payload stays valid (S3 allows at most 7 days)' },
  MAX_ATTEMPTS: { schema: int(1, 1000), default: '5', doc: 'deliveries before an email goes to the DLQ' },
  MAX_UNFINISHED_DELIVERIES: { schema: int(1, 1000), default: '3', doc: 'times an email left behind by a dead worker may be tried again with no outcome (the worker dying on it again) before it goes to the DLQ' },
  RETRY_BASE_MS: { schema: int(1, 24 * 60 * MINUTE), default: '1000', doc: 'first retry delay; doubles each attempt, with jitter' },
  RETRY_MAX_MS: { schema: int(1, 24 * 60 * MINUTE), default: String(5 * MINUTE), doc: 'longest retry delay' },
  WORKER_CONCURRENCY: { schema: int(1, 1024), default: '16', doc: 'deliveries in flight per worker process' },
  READ_BATCH_SIZE: { schema: int(1, 10_000), default: '100', doc: 'entries read from an account stream per XREADGROUP (one batch; accounts with entries waiting take turns, one batch each)' },
  READ_BLOCK_MS: { schema: int(10, MINUTE), default: '2000', doc: 'how long one blocking read of the signal stream (<prefix>:signals) waits for news of new entries' },
  WORKER_SWEEP_MS: { schema: int(100, 10 * MINUTE), default: '5000', doc: 'how often a worker looks at every account stream for new entries and due retries, whatever the signals said (a lost signal delays an email by at most this)' },
  CLAIM_IDLE_MS: { schema: int(100, 24 * 60 * MINUTE), default: '60000', doc: 'an entry pending this long with another consumer is claimed as an orphan' },
  CLAIM_INTERVAL_MS: { schema: int(100, 60 * MINUTE), default: '15000', doc: 'how often orphans are looked for' },
  DEDUPE_TTL_SECONDS: { schema: int(60, 365 * 24 * 3600), default: String(7 * 24 * 3600), doc: 'how long a delivered key is remembered and skipped' },
  CONSUMER_GROUP: { schema: z.string().regex(/^[A-Za-z0-9_.:-]+$/, 'expected letters, digits, _ . : or -'), default: 'workers', doc: 'consumer group of the workers' },
  CONSUMER_NAME: { schema: z.string().regex(/^[A-Za-z0-9_.:@-]+$/, 'expected letters, digits, _ . : @ or -'), doc: 'this worker\'s consumer name (default host-pid-random, unique per process)' },
} satisfies Record<string, SettingSpec>;

export type SettingName = keyof typeof SETTINGS;
