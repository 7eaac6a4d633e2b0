// What the parse threads put in the blob store for one message, timed and counted. The thread
// sends the records back with its answer (the metrics registry lives on the main thread); a
// failed write fails the message, so its entry is never appended without its blobs.
import { PassThrough } from 'node:stream';
import type { Readable } from 'node:stream';
import type { BlobStore, PutResult } from '../core/blobs/blob-store.ts';

export type BlobKind = 'raw' | 'attachment' | 'text' | 'html';

export interface BlobWrite {
  kind: BlobKind;
  bytes: number;
  seconds: number;
  result: 'created' | 'existing' | 'failed';
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

  /** A stream to write the raw message into as it arrives; `end()` resolves with the stored object. */
  rawSink(): { write(chunk: Uint8Array): void; end(): Promise<PutResult> } {
    const pass = new PassThrough({ highWaterMark: 1024 * 1024 });
    let failed = false;
    pass.on('error', () => undefined); // reported through `stored`
    const stored = this.track('raw', () => this.store.putStream(pass));
    stored.catch(() => { failed = true; });
    return {
      // Chunks are kept by reference until the store has them; for a message fetched whole they are
      // views of the one buffer, for a streamed one the chunks IMAP sent.
      write: (chunk) => { if (!failed) pass.write(chunk); },
      end: () => { if (!failed) pass.end(); return stored; },
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
        this.records.push({ kind, bytes: put.size, seconds: seconds(), result: put.created ? 'created' : 'existing' });
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
