// Every error mailstream raises on purpose carries a stable `code`. What follows from an error
// (exit code, HTTP status, DLQ reason, metric label, retry or not) is decided from its class here
// and in the few mapping functions below, nowhere else.

export class MailstreamError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

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
  constructor(message: string, options?: { cause?: unknown; code?: string }) {
    super(options?.code ?? 'ERR_PERMANENT_DELIVERY', message, options);
  }
}

/** A sink failed in a way that may pass (timeout, 5xx, connection refused): retry with backoff. */
export class TransientDeliveryError extends MailstreamError {
  /** Server-requested wait before the next attempt (HTTP Retry-After), if any. */
  readonly retryAfterMs: number | undefined;
  constructor(message: string, options?: { cause?: unknown; retryAfterMs?: number; code?: string }) {
    super(options?.code ?? 'ERR_TRANSIENT_DELIVERY', message, options);
    this.retryAfterMs = options?.retryAfterMs;
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
