// What the parse threads put in the blob store for one message, timed and counted. The thread
// sends the records back with its answer (the metrics registry lives on the main thread, and the
// refs go to the batch's durability barrier); a failed write fails the message, so its entry is
// never appended without its blobs.
import { PassThrough } from 'node:stream';
import type { Readable } from 'node:stream';
import { overriding, type BlobStore, type PutResult } from '../core/blobs/blob-store.ts';

export type BlobKind = 'raw' | 'attachment' | 'text' | 'html';

/** A raw message up to this size is held (by reference) and put whole; a larger one streams. */
const RAW_HELD_BYTES = 1024 * 1024;

export interface BlobWrite {
  kind: BlobKind;
  bytes: number;
  /** Until the content was written (with deferred durability, not yet synced). */
  seconds: number;
  result: 'created' | 'existing' | 'failed';
  /** The object's ref (not for a failed write). */
  ref?: string;
}

/**
 * The store as the parse threads use it: each put resolves once its content is written, and the
 * batch makes every object durable at once (`flush` with the refs its messages answered) right
 * before its append. The thread parses on instead of waiting for syncs one message at a time.
 */
export function deferringDurability(store: BlobStore): BlobStore {
  return overriding(store, {
    put: (content) => store.put(content, { durable: false }),
    putStream: (content) => store.putStream(content, { durable: false }),
  });
}

/**
 * The chunks as one buffer: a message fetched whole arrives as consecutive views of its one buffer,
 * which are joined by a view, not a copy.
 */
function joined(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const first = chunks[0];
  let end = first ? first.byteOffset + first.byteLength : 0;
  for (const chunk of chunks.slice(1)) {
    if (chunk.buffer !== first!.buffer || chunk.byteOffset !== end) return Buffer.concat(chunks);
    end += chunk.byteLength;
  }
  return first ? new Uint8Array(first.buffer, first.byteOffset, end - first.byteOffset) : new Uint8Array(0);
}

/** The writes of one message. */
export class BlobWrites {
  readonly records: BlobWrite[] = [];
  private readonly store: BlobStore;
  private readonly pending: Array<Promise<unknown>> = [];

  constructor(store: BlobStore) {
    this.store = store;
  }

  put(kind: BlobKind, content: Uint8Array): Promise<PutResult> {
    return this.track(kind, () => this.store.put(content));
  }

  /**
   * Streams a mailparser attachment into the store. Should the store fail half-way, the rest of the
   * attachment is drained: mailparser waits for it to be read before it parses on.
   */
  putAttachment(content: Readable): Promise<PutResult> {
    const pass = new PassThrough();
    content.pipe(pass);
    return this.track('attachment', () => this.store.putStream(pass)).catch((err: unknown) => {
      content.unpipe(pass);
      content.resume();
      throw err;
    });
  }

  /**
   * Where the raw message is written as it arrives; `end()` resolves with the stored object. Chunks
   * are kept by reference (for a message fetched whole, views of its one buffer) and put whole at the
   * end, without a stream in between; a message that grows past RAW_HELD_BYTES (a huge one, arriving
   * in partial fetches) streams into the store from there on instead of being held.
   */
  rawSink(): { write(chunk: Uint8Array): void; end(): Promise<PutResult> } {
    const held: Uint8Array[] = [];
    let heldBytes = 0;
    let streaming: { pass: PassThrough; stored: Promise<PutResult> } | undefined;
    let failed = false;
    const startStreaming = () => {
      const pass = new PassThrough({ highWaterMark: 1024 * 1024 });
      pass.on('error', () => undefined); // reported through `stored`
      const stored = this.track('raw', () => this.store.putStream(pass));
      stored.catch(() => { failed = true; });
      for (const chunk of held.splice(0)) pass.write(chunk);
      return { pass, stored };
    };
    return {
      write: (chunk) => {
        if (failed) return;
        if (streaming) return void streaming.pass.write(chunk);
        held.push(chunk);
        heldBytes += chunk.byteLength;
        if (heldBytes > RAW_HELD_BYTES) streaming = startStreaming();
      },
      end: () => {
        if (!streaming) return this.track('raw', () => this.store.put(joined(held)));
        if (!failed) streaming.pass.end();
        return streaming.stored;
      },
    };
  }

  /** Resolves when every write started has settled; rejects with the first failure. */
  async settle(): Promise<void> {
    const results = await Promise.allSettled(this.pending);
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure) throw failure.reason;
  }

  private track(kind: BlobKind, write: () => Promise<PutResult>): Promise<PutResult> {
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    const done = write().then(
      (put) => {
        this.records.push({ kind, bytes: put.size, seconds: seconds(), result: put.created ? 'created' : 'existing', ref: put.ref });
        return put;
      },
      (err: unknown) => {
        this.records.push({ kind, bytes: 0, seconds: seconds(), result: 'failed' });
        throw err;
      },
    );
    done.catch(() => undefined); // settle() reports it
    this.pending.push(done);
    return done;
  }
}
