// What a `module://` handler sees of mailstream. Users import it as `mailstream/sink`
// (src/sink.ts, package.json "exports"); docs/sinks.md describes the contract.
import type { Readable } from 'node:stream';
import type { ChangeEvent, EmailEntry, EntryType, MessageDeleted, MessageMoved, MessageUpdated, StreamPayload } from '../../core/entry.ts';
import type { Outcome } from './types.ts';

export { BlobNotFoundError, BlobStoreUnavailableError, PermanentDeliveryError, TransientDeliveryError } from '../../core/errors.ts';
export type { DeliveryRetryKind, SinkFailureKind } from '../../core/errors.ts';
export type { ChangeEvent, EmailEntry, EntryType, MessageDeleted, MessageMoved, MessageUpdated, Outcome, StreamPayload };

/** The blob store (BLOB_STORE_URL), for the refs of an email: `raw.ref`, `attachments[i].ref`, `textRef`, `htmlRef`. */
export interface BlobReader {
  /**
   * The object's bytes. Rejects with BlobNotFoundError when the store holds none under `ref`
   * (thrown on from a handler: the email goes to the DLQ), with BlobStoreUnavailableError when the
   * store does not answer or the worker has none (thrown on: the email waits for the store,
   * uncharged while most of the batch does).
   */
  open(ref: string): Promise<Readable>;
}

/** The second argument of `handle(email, ctx)`. */
export interface HandlerContext {
  /** The idempotency key: the same on every redelivery of this email. */
  idempotencyKey: string;
  /** The stream entry id. */
  entryId: string;
  /** What the first argument is: `message.new` (an EmailEntry), or with TRACK_CHANGES a change to one (a ChangeEvent of this type). */
  type: EntryType;
  account: string;
  /** 1 on the first try. */
  attempt: number;
  /** Aborted when the worker gives up on this delivery (shutdown). */
  signal: AbortSignal;
  blobs: BlobReader;
}

/** One email of a batch, beside `emails[i]` at the same index. */
export interface BatchDelivery {
  idempotencyKey: string;
  entryId: string;
  /** What `emails[i]` is (its own `type` field says the same). */
  type: EntryType;
  /** 1 on the first try. */
  attempt: number;
}

/** The second argument of `handleBatch(emails, ctx)`. */
export interface BatchContext {
  /** Every email of a batch belongs to this account. */
  account: string;
  /** `deliveries[i]` describes `emails[i]`. */
  deliveries: BatchDelivery[];
  /** Aborted when the worker gives up on this batch (shutdown). */
  signal: AbortSignal;
  blobs: BlobReader;
}

/** The argument of `init(ctx)`. */
export interface InitContext {
  /** Aborted when the worker shuts down, just before `close()`: stops work `init` started. */
  signal: AbortSignal;
}

/** What a handler module exports: `handle` and/or `handleBatch`, optionally `init` and `close`. */
export interface SinkModule {
  /** `email.type` tells an email (`message.new`) from a change to one sent before (TRACK_CHANGES). */
  handle?(email: StreamPayload, ctx: HandlerContext): unknown;
  /** Resolves with one outcome per email, in order. Preferred over `handle` when both exist. */
  handleBatch?(emails: StreamPayload[], ctx: BatchContext): Outcome[] | Promise<Outcome[]>;
  /** Called once before the worker opens any connection; a throw stops start-up. */
  init?(ctx: InitContext): unknown;
  /** Called once at shutdown, after the last delivery. */
  close?(): unknown;
}
