// A parse thread: receives raw messages (whole, or streamed in chunks for huge ones) with their
// IMAP metadata, answers serialised entries. With a blob store it also puts each message's blobs
// (the thread opens its own store client) and answers what it wrote, for the metrics and for the
// batch's durability barrier (a 'flush' job naming the refs, sent right before the append).
import { parentPort, workerData } from 'node:worker_threads';
import type { BlobStoreConfig } from '../config/load.ts';
import type { BlobStore } from '../core/blobs/blob-store.ts';
import { openBlobStore } from '../core/blobs/open-store.ts';
import { EntryBuilder, feedWhole, type EntryOptions, type FetchMeta } from './email-entry.ts';
import { deferringDurability, type BlobWrite } from './blob-writes.ts';
import type { PreparedEntry } from './stream-append.ts';

export type ParseJob =
  | { kind: 'whole'; id: number; raw: Uint8Array; meta: FetchMeta }
  | { kind: 'begin'; id: number; meta: FetchMeta }
  | { kind: 'chunk'; id: number; chunk: Uint8Array }
  | { kind: 'end'; id: number }
  | { kind: 'flush'; id: number; refs: string[] };

export type ParseAnswer =
  | { id: number; kind: 'parsed'; entry: PreparedEntry; blobWrites: BlobWrite[] }
  | { id: number; kind: 'flushed' }
  /** `code`: the error's, so the main thread can raise the same typed error. */
  | { id: number; kind: 'failed'; error: string; code?: string; blobWrites: BlobWrite[] };

export interface ParseThreadOptions extends EntryOptions {
  blobStore?: BlobStoreConfig;
}

const options = workerData as ParseThreadOptions;
// Jobs that arrive while the store opens wait for it; the store of `none` is null.
const storeReady: Promise<BlobStore | null> = openBlobStore(options.blobStore ?? { kind: 'none' });
storeReady.catch(() => undefined); // each job reports it
const entryStore = storeReady.then((store) => store && deferringDurability(store));
entryStore.catch(() => undefined);

const streaming = new Map<number, { builder: Promise<EntryBuilder>; chunks: Promise<void> }>();

const asBuffer = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

const failed = (id: number, err: unknown, blobWrites: BlobWrite[]): ParseAnswer =>
  ({ id, kind: 'failed', error: (err as Error).message, code: (err as { code?: string }).code, blobWrites });

// Every message starts as it arrives: mailparser advances all of them a step per turn of the event
// loop, and the more there are, the less each pays for the turns (one or two at a time cost a
// quarter more CPU per message than a batch at once, measured).
async function answer(id: number, builder: Promise<EntryBuilder>): Promise<void> {
  let made: EntryBuilder | undefined;
  try {
    made = await builder;
    const entry = await made.finish();
    parentPort!.postMessage({ id, kind: 'parsed', entry, blobWrites: made.blobWrites } satisfies ParseAnswer);
  } catch (err) {
    parentPort!.postMessage(failed(id, err, made?.blobWrites ?? []));
  }
}

async function flush(id: number, refs: string[]): Promise<void> {
  try {
    await (await storeReady)?.flush(refs);
    parentPort!.postMessage({ id, kind: 'flushed' } satisfies ParseAnswer);
  } catch (err) {
    parentPort!.postMessage(failed(id, err, []));
  }
}

parentPort!.on('message', (job: ParseJob) => {
  switch (job.kind) {
    case 'whole':
      return void answer(job.id, entryStore.then((store) => feedWhole(new EntryBuilder(job.meta, options, store), asBuffer(job.raw))));
    case 'begin': {
      const builder = entryStore.then((store) => new EntryBuilder(job.meta, options, store));
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
      if (!stream) return void answer(job.id, Promise.reject(new Error('unknown streamed message')));
      return void answer(job.id, stream.chunks.then(() => stream.builder));
    }
    case 'flush':
      return void flush(job.id, job.refs);
  }
});
