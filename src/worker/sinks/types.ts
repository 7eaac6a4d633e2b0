// What every sink offers the worker. A sink either takes one email per call (webhook, module:
// the worker runs several at once) or a whole read batch in one write (postgres, jsonl).
import type { StreamEntry } from '../entries.ts';

export type SinkKind = 'webhook' | 'postgres' | 'jsonl' | 'module';

export interface Delivery extends StreamEntry {
  account: string;
  /** Attempts that failed before this one (0 on the first try). */
  previousAttempts: number;
}

export interface Sink {
  kind: SinkKind;
  /** `each`: deliver() gets one email; `batch`: deliver() gets a read batch and writes it at once. */
  mode: 'each' | 'batch';
  /**
   * Delivers the emails; resolves when the sink has them for good. Throws a
   * PermanentDeliveryError for what can never succeed, anything else to retry. The signal aborts
   * a delivery the worker gives up on (shutdown).
   */
  deliver(deliveries: Delivery[], signal: AbortSignal): Promise<void>;
  /** Throws with a short reason when the sink does not answer (for /ready). */
  check(): Promise<void>;
  close(): Promise<void>;
}
