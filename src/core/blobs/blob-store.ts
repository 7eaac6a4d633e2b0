// The blob store: where the producer puts what does not belong in Redis (the raw message,
// attachments, long bodies) and where readers fetch it back. Objects are content-addressed
// (src/core/blobs/blob-ref.ts): the same content is stored once, and writing it again changes
// nothing. A put resolves only once the object is durable in the store, so a caller that puts
// before it appends an entry never leaves an entry pointing at a missing object. A caller storing
// many objects at once may instead put them with `durable: false` and make them durable together
// with one `flush(refs)` (a durability barrier) before anything refers to them: a disk syncs a
// group of files in about the time it syncs one.
import type { Readable } from 'node:stream';

export type BlobContent = AsyncIterable<Uint8Array>;

export interface PutResult {
  /** `sha256:<hex>` of the content. */
  ref: string;
  sha256: string;
  size: number;
  /** false when the object was there already (the write was a no-op). */
  created: boolean;
}

export interface BlobStat {
  ref: string;
  size: number;
  /** Last write (or, in the file store, the last put of the same content). */
  modifiedAt: Date;
}

export interface PutOptions {
  /**
   * false: resolve once the content is written, before it is durable; it is durable only once
   * `flush` named its ref. Until then a crash may lose it (never half of it). @default true
   */
  durable?: boolean;
}

export interface BlobStore {
  readonly kind: 'file' | 's3';
  /** For people: the directory or s3://bucket/prefix (never credentials). */
  readonly location: string;
  /** Stores content held whole in memory. */
  put(content: Uint8Array, options?: PutOptions): Promise<PutResult>;
  /** Stores content as it streams by (its hash is known only at the end); never holds it whole. */
  putStream(content: BlobContent, options?: PutOptions): Promise<PutResult>;
  /**
   * The durability barrier: resolves once every object named is durable (those put with
   * `durable: false` included); rejects with BlobStoreUnavailableError when one of them could not
   * be stored. A no-op where every put is durable when it resolves (S3).
   */
  flush(refs: Iterable<string>): Promise<void>;
  /** The object's bytes; rejects with BlobNotFoundError when there is none. */
  open(ref: string): Promise<Readable>;
  /** Size and time of an object, or null when there is none. */
  stat(ref: string): Promise<BlobStat | null>;
  /** A URL anyone holding it may GET for `expiresInSeconds` (S3 only). */
  presignGet?(ref: string, expiresInSeconds: number): Promise<string>;
  /** Every object (order unspecified). */
  list(): AsyncIterable<BlobStat>;
  /** Removes an object; false when there was none. */
  delete(ref: string): Promise<boolean>;
  /** Resolves when the store takes writes (a tiny idempotent put), rejects when it does not. */
  probe(): Promise<void>;
  close(): Promise<void>;
}

/** Where the location of a store is shown, for the log and `blob stat`. */
export function describeStore(store: BlobStore | null): string {
  return store ? `${store.kind} ${store.location}` : 'none';
}

/**
 * The store with some of its calls replaced (the parse threads' deferred durability, the worker's
 * measured reads); every other call goes to the store itself.
 */
export function overriding(store: BlobStore, overrides: Partial<Omit<BlobStore, 'kind' | 'location'>>): BlobStore {
  return {
    kind: store.kind,
    location: store.location,
    put: (content, options) => store.put(content, options),
    putStream: (content, options) => store.putStream(content, options),
    flush: (refs) => store.flush(refs),
    open: (ref) => store.open(ref),
    stat: (ref) => store.stat(ref),
    ...(store.presignGet ? { presignGet: (ref: string, seconds: number) => store.presignGet!(ref, seconds) } : {}),
    list: () => store.list(),
    delete: (ref) => store.delete(ref),
    probe: () => store.probe(),
    close: () => store.close(),
    ...overrides,
  };
}
