// What every sink offers the worker: one call per batch, one outcome per email. A sink decides
// for each email whether it has it for good (delivered), may take it later (retry) or never will
// (permanent); the worker turns those outcomes into acknowledgements, retry schedules and dead
// letters in one Redis step per batch (src/core/scripts/settleBatch).
import type { DeliveryRetryKind } from '../../core/errors.ts';
import type { Metrics } from '../../core/metrics.ts';
import type { StreamEntry } from '../entries.ts';

export type SinkKind = 'webhook' | 'postgres' | 'jsonl' | 'module';

export interface Delivery extends StreamEntry {
  account: string;
  /** Attempts that failed before this one (0 on the first try). */
  previousAttempts: number;
}

/** Kinds a `retry` outcome may carry: a sink's own, or the blob store's the worker reads emails' blobs from. */
export type RetryKind = DeliveryRetryKind;

export type Outcome =
  | { status: 'delivered' }
  | {
    status: 'retry';
    /** Short, secret-free text kept in the failure record and, in the end, the DLQ. */
    reason: string;
    /** `sink-unavailable` / `sink-timeout` / `blob-unavailable`: the sink or the blob store is down; the worker waits for it. @default 'sink-failed' */
    kind?: RetryKind;
    /** The sink asked for this wait before the next attempt (HTTP Retry-After). */
    retryAfterMs?: number;
  }
  | { status: 'permanent'; reason: string };

export const DELIVERED: Outcome = Object.freeze({ status: 'delivered' });

export interface Sink {
  kind: SinkKind;
  /**
   * Delivers a batch (at most READ_BATCH_SIZE emails of one account) and resolves with one outcome
   * per email, in the batch's order. It should not throw: a sink that cannot reach its target
   * answers `retry` with kind `sink-unavailable` for each email. Should it throw anyway, the worker
   * treats the throw as a `retry` of every email of the batch. The signal aborts a delivery the
   * worker gives up on (shutdown).
   */
  deliver(batch: readonly Delivery[], signal: AbortSignal): Promise<Outcome[]>;
  /** Throws with a short reason when the sink does not answer (for /ready). */
  check(): Promise<void>;
  close(): Promise<void>;
  /** Given the daemon's metrics once they exist (a sink reading the blob store counts its reads). */
  useMetrics?(metrics: Metrics): void;
}

export interface SinkOptions {
  /** Deliveries in flight at once within one call (WORKER_CONCURRENCY). */
  concurrency: number;
}
