// Whether the blob store takes writes, as the producer sees it. Parse threads do the writes; a
// message whose blobs failed fails its batch, which is never appended. The batch's outcome goes
// through a breaker ('blob-store'); from the first failure until a probe (a tiny idempotent put)
// succeeds again, the stream gate keeps fetching paused and /ready says why. So no entry is ever
// appended without its blobs, and nothing is lost: the batch is fetched again once the store is back.
import type { BlobStore } from '../core/blobs/blob-store.ts';
import { createBreaker, type Breaker } from '../core/breaker.ts';
import { BlobStoreUnavailableError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import type { BlobWrite } from './blob-writes.ts';

export interface BlobHealth {
  readonly store: BlobStore;
  /** False from a failed write until a probe succeeds. */
  readonly available: boolean;
  readonly breaker: { readonly opened: boolean; readonly halfOpen: boolean };
  /** Waits for a batch's blob writes through the breaker; an open breaker fails it at once. */
  guard<T>(work: () => Promise<T>): Promise<T>;
  /** One probe of the store (through the breaker); true when it took the write. */
  probe(): Promise<boolean>;
  lastError(): string | null;
  /** Metrics of the writes a parse thread reports. */
  record(writes: readonly BlobWrite[]): void;
  notReadyReason(): string | undefined;
  status(): Record<string, unknown>;
}

/** A failure that says the store did not take a write (as opposed to a failure of the batch). */
export function isBlobOutage(err: unknown): boolean {
  return err instanceof BlobStoreUnavailableError;
}

export function createBlobHealth(store: BlobStore, deps: { metrics: Metrics; logger: Logger }): BlobHealth {
  const { metrics, logger } = deps;
  let available = true;
  let lastError: string | null = null;
  const breakerDeps = { metrics, logger, account: '*' };
  const breaker: Breaker<[() => Promise<unknown>], unknown> = createBreaker('blob-store', (work: () => Promise<unknown>) => work(), breakerDeps,
    { isNeutral: (err) => !isBlobOutage(err), resetTimeoutMs: 5_000 });
  metrics.blobStoreUp.set(1);

  const down = (err: unknown) => {
    lastError = (err as Error).message;
    if (available) logger.warn({ store: store.location, err }, 'blob store does not take writes: fetching paused, nothing is appended without its blobs');
    available = false;
    metrics.blobStoreUp.set(0);
  };
  const up = () => {
    if (!available) logger.info({ store: store.location }, 'blob store takes writes again: fetching resumes');
    available = true;
    lastError = null;
    metrics.blobStoreUp.set(1);
  };

  const fire = async <T>(work: () => Promise<T>): Promise<T> => {
    try {
      return await (breaker.fire(work) as Promise<T>);
    } catch (err) {
      if ((err as { code?: string }).code === 'EOPENBREAKER') throw new BlobStoreUnavailableError(`blob store ${store.location}: circuit breaker open (${lastError ?? 'writes failing'})`);
      throw err;
    }
  };

  return {
    store,
    get available() { return available; },
    breaker,
    async guard(work) {
      try {
        const result = await fire(work);
        return result;
      } catch (err) {
        if (isBlobOutage(err)) down(err);
        throw err;
      }
    },
    async probe() {
      try {
        await fire(() => store.probe());
        up();
        return true;
      } catch (err) {
        // While the breaker is open no probe reaches the store: keep the last real error.
        if (!(breaker.opened && lastError)) down(err);
        return false;
      }
    },
    lastError: () => lastError,
    record(writes) {
      for (const w of writes) {
        if (w.result === 'failed') {
          metrics.blobWriteFailures.inc({ kind: w.kind });
          continue;
        }
        metrics.blobWrites.inc({ kind: w.kind, result: w.result });
        if (w.result === 'created') metrics.blobWrittenBytes.inc({ kind: w.kind }, w.bytes);
        metrics.blobWriteDuration.observe({ kind: w.kind }, w.seconds);
      }
    },
    notReadyReason() {
      if (breaker.opened) return `blob store ${store.location}: circuit breaker open (${lastError ?? 'writes failing'}); fetching paused`;
      if (!available) return `blob store ${store.location}: not taking writes (${lastError}); fetching paused`;
      return undefined;
    },
    status: () => ({
      kind: store.kind,
      location: store.location,
      available,
      breaker: breaker.opened ? 'open' : breaker.halfOpen ? 'half-open' : 'closed',
      lastError,
    }),
  };
}
