// A parse thread: receives raw messages (whole, or streamed in chunks for huge ones) with their
// IMAP metadata, answers serialised entries. With a blob store it also puts each message's blobs
// (the thread opens its own store client) and answers what it wrote, for the metrics.
import { parentPort, workerData } from 'node:worker_threads';
import type { BlobStoreConfig } from '../config/load.ts';
import type { BlobStore } from '../core/blobs/blob-store.ts';
import { openBlobStore } from '../core/blobs/open-store.ts';
import { EntryBuilder, feedWhole, type EntryOptions, type FetchMeta } from './email-entry.ts';
import type { BlobWrite } from './blob-writes.ts';
import type { PreparedEntry } from './stream-append.ts';

export type ParseJob =
  | { kind: 'whole'; id: number; raw: Uint8Array; meta: FetchMeta }
  | { kind: 'begin'; id: number; meta: FetchMeta }
  | { kind: 'chunk'; id: number; chunk: Uint8Array }
  | { kind: 'end'; id: number };

export interface ParseAnswer {
  id: number;
  entry?: PreparedEntry;
  error?: string;
  /** The error's `code`, so the main thread can raise the same typed error. */
  code?: string;
  blobWrites: BlobWrite[];
}

export interface ParseThreadOptions extends EntryOptions {
  blobStore?: BlobStoreConfig;
}

const options = workerData as ParseThreadOptions;
// Jobs that arrive while the store opens wait for it; the store of `none` is null.
const storeReady: Promise<BlobStore | null> = openBlobStore(options.blobStore ?? { kind: 'none' });
storeReady.catch(() => undefined); // each job reports it
const streaming = new Map<number, { builder: Promise<EntryBuilder>; chunks: Promise<void> }>();

const asBuffer = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

function answer(id: number, builder: Promise<EntryBuilder>): void {
  let made: EntryBuilder | undefined;
  builder.then((b) => { made = b; return b.finish(); }).then(
    (entry) => parentPort!.postMessage({ id, entry, blobWrites: made!.blobWrites } satisfies ParseAnswer),
    (err: unknown) => parentPort!.postMessage({ id, error: (err as Error).message, code: (err as { code?: string }).code, blobWrites: made?.blobWrites ?? [] } satisfies ParseAnswer),
  );
}

parentPort!.on('message', (job: ParseJob) => {
  switch (job.kind) {
    case 'whole':
      return answer(job.id, storeReady.then((store) => feedWhole(new EntryBuilder(job.meta, options, store), asBuffer(job.raw))));
    case 'begin': {
      const builder = storeReady.then((store) => new EntryBuilder(job.meta, options, store));
      const chunks = builder.then(() => undefined);
      chunks.catch(() => undefined); // the answer to 'end' reports it
      streaming.set(job.id, { builder, chunks });
      return;
    }
    case 'chunk': {
      const stream = streaming.get(job.id);
      // In order, after the builder exists (the store may still be opening for the first jobs).
      if (!stream) return;
      stream.chunks = stream.chunks.then(async () => { (await stream.builder).write(asBuffer(job.chunk)); });
      stream.chunks.catch(() => undefined); // the answer to 'end' reports it
      return;
    }
    case 'end': {
      const stream = streaming.get(job.id);
      streaming.delete(job.id);
      if (!stream) return answer(job.id, Promise.reject(new Error('unknown streamed message')));
      return answer(job.id, stream.chunks.then(() => stream.builder));
    }
  }
});
