// Every error mailstream raises on purpose carries a stable `code`, and every failure mailstream
// meets (a sink's answer, a Redis reply, an IMAP refusal) is sorted into one kind of ERROR_KINDS.
// What follows from an error (exit code, HTTP status, DLQ reason, metric label, retry or not,
// wait for the dependency or charge the email) is decided from that kind here, nowhere else.

export class MailstreamError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * The one table of failure kinds. `dependency`: whose failure it is. `waitOut`: the dependency
 * refuses work for now (down, full, read-only, throttling us): wait with backoff, charge nothing to
 * the email. `permanent`: retrying the same email can never help.
 */
export const ERROR_KINDS = {
  // A sink's answer for one email (src/worker/sinks/*).
  'sink-rejected': { dependency: 'sink', waitOut: false, permanent: true, doc: 'the sink refused this email for good (4xx, bad data): DLQ' },
  'sink-failed': { dependency: 'sink', waitOut: false, permanent: false, doc: 'this email failed in a way that may pass (500, handler error): retry with backoff' },
  'sink-rate-limited': { dependency: 'sink', waitOut: false, permanent: false, doc: 'the sink asked us to slow down (429): retry after its Retry-After' },
  'sink-timeout': { dependency: 'sink', waitOut: true, permanent: false, doc: 'the sink did not answer in time' },
  'sink-unavailable': { dependency: 'sink', waitOut: true, permanent: false, doc: 'the sink is down or unreachable (connection refused, 502/503/504, database down)' },
  // The blob store as the worker reads it back (src/worker/sinks/blob-bodies.ts, a module's ctx.blobs).
  'blob-unavailable': { dependency: 'blob-store', waitOut: true, permanent: false, doc: 'the blob store did not give back an object an email refers to (down, unreachable, or no BLOB_STORE_URL in the worker): the email waits' },
  // A Redis reply (classified from the protocol's error code, the reply's first word).
  'redis-oom': { dependency: 'redis', waitOut: true, permanent: false, doc: 'Redis is at maxmemory under noeviction and refuses writes' },
  'redis-readonly': { dependency: 'redis', waitOut: true, permanent: false, doc: 'the Redis node is a read-only replica (failover under way)' },
  'redis-loading': { dependency: 'redis', waitOut: true, permanent: false, doc: 'Redis is loading its data set after a restart' },
  'redis-unavailable': { dependency: 'redis', waitOut: true, permanent: false, doc: 'no connection to Redis, or the cluster is down or moving slots' },
  'redis-nogroup': { dependency: 'redis', waitOut: false, permanent: false, doc: 'the consumer group (or stream) does not exist (after a restore or a purge)' },
  'redis-busygroup': { dependency: 'redis', waitOut: false, permanent: false, doc: 'the consumer group exists already' },
  'redis-error': { dependency: 'redis', waitOut: false, permanent: false, doc: 'any other Redis error reply' },
  // IMAP.
  'imap-auth': { dependency: 'imap', waitOut: true, permanent: false, doc: 'the login was refused' },
  'imap-throttled': { dependency: 'imap', waitOut: true, permanent: false, doc: 'the server throttles us ([THROTTLED], too many simultaneous connections)' },
  'imap-over-quota': { dependency: 'imap', waitOut: true, permanent: false, doc: 'a bandwidth or download quota is used up ([OVERQUOTA], Gmail\'s daily limit)' },
  'imap-uidvalidity': { dependency: 'imap', waitOut: false, permanent: false, doc: 'UIDVALIDITY changed while a batch was in flight' },
  'imap-connection': { dependency: 'imap', waitOut: true, permanent: false, doc: 'the connection failed or was closed' },
  // Anything else.
  unknown: { dependency: 'none', waitOut: false, permanent: false, doc: 'not one of ours: treated as transient' },
} as const satisfies Record<string, { dependency: string; waitOut: boolean; permanent: boolean; doc: string }>;

export type ErrorKind = keyof typeof ERROR_KINDS;
export type SinkFailureKind = Extract<ErrorKind, `sink-${string}`>;
/** What a delivery may be retried as: the sink's own failures, or the blob store's the worker reads emails' blobs from. */
export type DeliveryRetryKind = Exclude<SinkFailureKind, 'sink-rejected'> | 'blob-unavailable';

/** A setting is missing or wrong. `setting` names the variable the operator must change. */
export class ConfigError extends MailstreamError {
  readonly setting: string;
  constructor(setting: string, problem: string) {
    super('ERR_CONFIG', `${setting}: ${problem}`);
    this.setting = setting;
  }
}

/** The command line itself is wrong (unknown option, missing argument). */
export class UsageError extends MailstreamError {
  constructor(message: string) {
    super('ERR_USAGE', message);
  }
}

/** Credentials were refused or cannot be obtained (revoked refresh token, wrong password). */
export class AuthError extends MailstreamError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_AUTH', message, options);
  }
}

/** A sink refused an email for good: retrying cannot help, so it goes straight to the DLQ. */
export class PermanentDeliveryError extends MailstreamError {
  /** Read by isPermanent across copies of this module (a user's handler may load its own). */
  readonly permanent = true;
  readonly kind: SinkFailureKind = 'sink-rejected';
  constructor(message: string, options?: { cause?: unknown; code?: string }) {
    super(options?.code ?? 'ERR_PERMANENT_DELIVERY', message, options);
  }
}

/** A sink failed in a way that may pass (timeout, 5xx, connection refused): retry with backoff. */
export class TransientDeliveryError extends MailstreamError {
  /** Server-requested wait before the next attempt (HTTP Retry-After), if any. */
  readonly retryAfterMs: number | undefined;
  /** Which kind of failure: `sink-unavailable` / `sink-timeout` / `blob-unavailable` make the worker wait for the dependency. */
  readonly kind: DeliveryRetryKind;
  constructor(message: string, options?: { cause?: unknown; retryAfterMs?: number; code?: string; kind?: DeliveryRetryKind }) {
    super(options?.code ?? 'ERR_TRANSIENT_DELIVERY', message, options);
    this.retryAfterMs = options?.retryAfterMs;
    this.kind = options?.kind ?? 'sink-failed';
  }
}

/** A mailbox's UIDVALIDITY no longer matches what the append was prepared for. */
export class StaleUidValidityError extends MailstreamError {
  constructor(mailbox: string) {
    super('ERR_STALE_UIDVALIDITY', `UIDVALIDITY of ${mailbox} changed while a batch was in flight`);
  }
}

/** A lease (fencing token) is no longer ours: another producer owns the mailbox now. */
export class LeaseLostError extends MailstreamError {
  constructor(mailbox: string) {
    super('ERR_LEASE_LOST', `lease on ${mailbox} is held by another producer`);
  }
}

/** A command of the contract that this build does not provide yet. */
export class NotImplementedError extends MailstreamError {
  constructor(command: string) {
    super('ERR_NOT_IMPLEMENTED', `\`mailstream ${command}\` is not built yet`);
  }
}

export const EXIT = { ok: 0, failure: 1, usage: 2, config: 78 } as const;

export function exitCodeFor(err: unknown): number {
  if (err instanceof ConfigError) return EXIT.config;
  if (err instanceof UsageError) return EXIT.usage;
  return EXIT.failure;
}

/** A dependency refused work and said why in a way the ERROR_KINDS table names. */
export class DependencyError extends MailstreamError {
  readonly kind: ErrorKind;
  constructor(kind: ErrorKind, message: string, options?: { cause?: unknown }) {
    super(`ERR_${kind.toUpperCase().replace(/-/g, '_')}`, message, options);
    this.kind = kind;
  }
}

/**
 * A Redis error reply starts with its error code (RESP: the first word, e.g. `OOM`, `READONLY`,
 * `LOADING`): that code, not the prose after it, decides the kind. Errors raised by the client
 * itself (connection closed, retries exhausted) and socket errors mean Redis is unreachable.
 */
const REDIS_REPLY_CODES: Record<string, ErrorKind> = {
  OOM: 'redis-oom', READONLY: 'redis-readonly', LOADING: 'redis-loading', NOGROUP: 'redis-nogroup', BUSYGROUP: 'redis-busygroup',
  MASTERDOWN: 'redis-unavailable', CLUSTERDOWN: 'redis-unavailable', TRYAGAIN: 'redis-unavailable', MOVED: 'redis-unavailable', ASK: 'redis-unavailable',
  NOREPLICAS: 'redis-unavailable', BUSY: 'redis-unavailable',
};
const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'ECONNABORTED']);
const REDIS_CLIENT_ERRORS = new Set(['MaxRetriesPerRequestError', 'ClusterAllFailedError', 'AbortError']);

export function redisErrorKind(err: unknown): ErrorKind {
  if (!(err instanceof Error)) return 'unknown';
  if (err.name === 'ReplyError') {
    const code = /^[A-Z]+/.exec(err.message)?.[0] ?? '';
    return REDIS_REPLY_CODES[code] ?? 'redis-error';
  }
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && SOCKET_CODES.has(code)) return 'redis-unavailable';
  // ioredis rejects a command whose connection closed under it with a plain Error; its own
  // classes cover the rest. Both mean the same to us: no answer from Redis.
  if (REDIS_CLIENT_ERRORS.has(err.name) || err.message === 'Connection is closed.') return 'redis-unavailable';
  return 'redis-error';
}

/**
 * What an IMAP server's refusal means, read from its response code (RFC 5530, and Gmail's
 * THROTTLED and OVERQUOTA), never from the human text after it. `[ALERT]` asks that a person read
 * that text; on a refused login Gmail uses it for "Too many simultaneous connections": we back off
 * as from throttling and show the text.
 */
const IMAP_RESPONSE_CODES: Record<string, ErrorKind> = {
  AUTHENTICATIONFAILED: 'imap-auth', AUTHORIZATIONFAILED: 'imap-auth', EXPIRED: 'imap-auth', PRIVACYREQUIRED: 'imap-auth', CONTACTADMIN: 'imap-auth',
  THROTTLED: 'imap-throttled', ALERT: 'imap-throttled', LIMIT: 'imap-throttled',
  OVERQUOTA: 'imap-over-quota',
  UNAVAILABLE: 'imap-connection', SERVERBUG: 'imap-connection', INUSE: 'imap-connection',
};
/** imapflow's own codes: lost connections and timeouts; ETHROTTLE is its name for Microsoft 365's throttling answer. */
const IMAPFLOW_CODES: Record<string, ErrorKind> = {
  ETHROTTLE: 'imap-throttled', NoConnection: 'imap-connection', EConnectionClosed: 'imap-connection', StateLogout: 'imap-connection',
  ClosedAfterConnectText: 'imap-connection', ClosedAfterConnectTLS: 'imap-connection', CONNECT_TIMEOUT: 'imap-connection',
  GREETING_TIMEOUT: 'imap-connection', UPGRADE_TIMEOUT: 'imap-connection', ETIMEOUT: 'imap-connection',
};

interface ImapFailureFields { code?: unknown; serverResponseCode?: unknown; responseStatus?: unknown; authenticationFailed?: unknown; response?: unknown }

/** The bracketed response code of an IMAP command's failure (`THROTTLED` for `NO [THROTTLED] ...`), if any. */
export function imapResponseCode(err: unknown): string | undefined {
  const e = (err ?? {}) as ImapFailureFields;
  if (typeof e.serverResponseCode === 'string' && e.serverResponseCode) return e.serverResponseCode.toUpperCase();
  // Not every imapflow command copies the code onto the error (FETCH does not): read the parsed answer.
  const section = (e.response as { attributes?: Array<{ section?: Array<{ value?: unknown }> }> } | undefined)?.attributes?.[0]?.section?.[0]?.value;
  return typeof section === 'string' && section ? section.toUpperCase() : undefined;
}

function isImapFailure(err: unknown): boolean {
  const e = (err ?? {}) as ImapFailureFields;
  return typeof e.responseStatus === 'string' || e.authenticationFailed !== undefined || typeof e.serverResponseCode === 'string'
    || (typeof e.code === 'string' && e.code in IMAPFLOW_CODES);
}

/** The kind of a failure imapflow raised: the server's response code first, then imapflow's own code. */
export function imapErrorKind(err: unknown): ErrorKind {
  const e = (err ?? {}) as ImapFailureFields;
  const byResponse = IMAP_RESPONSE_CODES[imapResponseCode(err) ?? ''];
  if (byResponse) return byResponse;
  if (typeof e.code === 'string' && e.code in IMAPFLOW_CODES) return IMAPFLOW_CODES[e.code]!;
  if (e.authenticationFailed === true) return 'imap-auth';
  return 'imap-connection';
}

/** The kind of any failure mailstream meets: typed errors say it themselves; Redis replies and IMAP answers by code. */
export function errorKind(err: unknown): ErrorKind {
  const own = (err as { kind?: unknown } | null | undefined)?.kind;
  if (typeof own === 'string' && own in ERROR_KINDS) return own as ErrorKind;
  if (err instanceof AuthError) return 'imap-auth';
  if (err instanceof StaleUidValidityError) return 'imap-uidvalidity';
  if (isPermanent(err)) return 'sink-rejected';
  // Before Redis: imapflow's errors carry a `command` too.
  if (isImapFailure(err)) return imapErrorKind(err);
  if (err instanceof Error && (err.name === 'ReplyError' || (err as { command?: unknown }).command !== undefined)) return redisErrorKind(err);
  return 'unknown';
}

/** Whether a delivery that threw `err` should be tried again (anything unknown is retried). */
export function isPermanent(err: unknown): boolean {
  if (err instanceof PermanentDeliveryError) return true;
  // A user handler (module sink) may throw its own class named like ours from another copy of
  // the package; honour the name and code so `throw new PermanentDeliveryError()` always works.
  return err instanceof Error && (err.name === 'PermanentDeliveryError' || (err as { permanent?: unknown }).permanent === true);
}

/**
 * The blob store did not take or give back an object (down, full, refused, timed out). The
 * producer appends nothing whose blobs are not stored: it waits for the store instead.
 */
export class BlobStoreUnavailableError extends MailstreamError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_BLOB_STORE_UNAVAILABLE', message, options);
  }
}

/** The store answered, and holds no object under this ref (collected, or never copied over). */
export class BlobNotFoundError extends MailstreamError {
  readonly ref: string;
  constructor(ref: string, where: string) {
    super('ERR_BLOB_NOT_FOUND', `no blob ${ref} in ${where}`);
    this.ref = ref;
  }
}
