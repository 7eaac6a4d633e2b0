// Reading objects back from the blob store for a delivery: the start of a body, or a whole
// attachment checked against its sha256. Every failure is one of three typed answers the blob
// wrapper (blob-bodies.ts) turns into outcomes: the store holds no such object (BlobNotFoundError),
// the store does not answer (BlobStoreUnavailableError, the email waits), or the object is not
// what its ref says (PermanentDeliveryError: waiting cannot mend it).
import { createHash } from 'node:crypto';
import { addAbortSignal, type Readable } from 'node:stream';
import { isRef, sha256OfRef } from '../../core/blobs/blob-ref.ts';
import { describeStore, type BlobStore } from '../../core/blobs/blob-store.ts';
import { BlobNotFoundError, BlobStoreUnavailableError, PermanentDeliveryError } from '../../core/errors.ts';

/** A worker without BLOB_STORE_URL meeting an email that refers to the store. */
export function noStoreError(ref: string): BlobStoreUnavailableError {
  return new BlobStoreUnavailableError(`the email refers to blob ${ref} but this worker has no blob store (BLOB_STORE_URL=none): set it as for the producer, or SINK_BODIES=inline`);
}

/**
 * A store that holds no object at all is not the one the producer writes to (a file store whose
 * mount is gone, the wrong bucket or prefix): its "no such blob" says nothing about the email, and
 * taking it at its word would dead-letter every email at once. Asked only when a blob is missing.
 */
async function missingOrStoreAbsent(store: BlobStore, missing: BlobNotFoundError): Promise<Error> {
  try {
    const objects = store.list()[Symbol.asyncIterator]();
    const first = await objects.next();
    await objects.return?.();
    if (!first.done) return missing;
  } catch (err) {
    return new BlobStoreUnavailableError(`blob store ${describeStore(store)}: no blob ${missing.ref}, and the store cannot be listed: ${(err as Error).message}`, { cause: err });
  }
  return new BlobStoreUnavailableError(`blob store ${describeStore(store)} holds no objects at all (not mounted, or not the store the producer writes to): waiting for it rather than taking ${missing.ref} for lost`);
}

/** The object's bytes, or the typed reason there are none (see missingOrStoreAbsent). */
export async function openBlob(store: BlobStore | null, ref: string): Promise<Readable> {
  // No store could ever give it back.
  if (!isRef(ref)) throw new PermanentDeliveryError(`not a blob ref: ${String(ref).slice(0, 80)} (expected sha256:<64 hex digits>)`);
  if (!store) throw noStoreError(ref);
  try {
    return await store.open(ref);
  } catch (err) {
    throw err instanceof BlobNotFoundError ? await missingOrStoreAbsent(store, err) : err;
  }
}

async function openFor(store: BlobStore | null, ref: string, signal: AbortSignal): Promise<Readable> {
  const stream = await openBlob(store, ref);
  // A delivery given up at shutdown must not hold a socket or a file open.
  return addAbortSignal(signal, stream);
}

/** What went wrong mid-read is the store's (a reset connection, an I/O error), never the email's. */
function readFailure(store: BlobStore, ref: string, err: unknown): Error {
  if (err instanceof BlobNotFoundError || err instanceof BlobStoreUnavailableError) return err;
  return new BlobStoreUnavailableError(`blob store ${describeStore(store)}: reading ${ref} failed: ${(err as Error).message}`, { cause: err });
}

/**
 * The first `maxBytes` of an object's UTF-8 text, and whether there was more. Reads no further
 * than it keeps, so a 50 MB body costs MAX_BODY_BYTES of memory and transfer, not 50 MB.
 */
export async function readTextStart(store: BlobStore | null, ref: string, maxBytes: number, signal: AbortSignal): Promise<{ value: string; truncated: boolean }> {
  const stream = await openFor(store, ref, signal);
  const chunks: Buffer[] = [];
  let size = 0;
  const hash = createHash('sha256');
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      size += chunk.length;
      hash.update(chunk);
      if (size > maxBytes) break; // ends the stream (and its download)
    }
  } catch (err) {
    throw readFailure(store!, ref, err);
  } finally {
    stream.destroy();
  }
  const bytes = Buffer.concat(chunks, size);
  if (bytes.length <= maxBytes) {
    if (hash.digest('hex') !== sha256OfRef(ref)) throw corrupt(store!, ref);
    return { value: bytes.toString('utf8'), truncated: false };
  }
  // Cut as the producer cuts: a multi-byte character split at the cut decodes as U+FFFD; drop it.
  return { value: bytes.subarray(0, maxBytes).toString('utf8').replace(/\uFFFD+$/, ''), truncated: true };
}

/** An object whole, checked against its ref (the content address). */
export async function readWhole(store: BlobStore | null, ref: string, signal: AbortSignal): Promise<Buffer> {
  const stream = await openFor(store, ref, signal);
  const chunks: Buffer[] = [];
  const hash = createHash('sha256');
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      hash.update(chunk);
    }
  } catch (err) {
    throw readFailure(store!, ref, err);
  } finally {
    stream.destroy();
  }
  if (hash.digest('hex') !== sha256OfRef(ref)) throw corrupt(store!, ref);
  return Buffer.concat(chunks);
}

function corrupt(store: BlobStore, ref: string): PermanentDeliveryError {
  return new PermanentDeliveryError(`blob ${ref} in ${describeStore(store)} does not hash to its ref (damaged in the store): restore it from a backup, then replay the email from the DLQ`);
}
