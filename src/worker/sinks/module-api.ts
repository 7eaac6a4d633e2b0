// What a `module://` handler may import from mailstream: throw PermanentDeliveryError to send an
// email straight to the DLQ; throw anything else to have it retried with backoff.
//   import { PermanentDeliveryError } from 'mailstream/src/worker/sinks/module-api.ts';
export { PermanentDeliveryError, TransientDeliveryError } from '../../core/errors.ts';
export type { EmailEntry } from '../../core/entry.ts';

/** The second argument of `handle(email, ctx)`. */
export interface HandlerContext {
  /** The idempotency key: the same on every redelivery of this email. */
  idempotencyKey: string;
  /** The stream entry id. */
  entryId: string;
  account: string;
  /** 1 on the first try. */
  attempt: number;
  /** Aborted when the worker gives up on this delivery (shutdown). */
  signal: AbortSignal;
}
