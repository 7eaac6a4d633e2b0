// Parsing, not IMAP, is the producer's bottleneck (mailparser runs ~1-2.5k msg/s on one core),
// so it runs on worker threads while the main thread keeps fetching and appending. Jobs go to
// the least-busy thread; a thread that dies is replaced and its jobs fail (the batch is retried).
// With a blob store the threads also write each message's blobs; a message whose blobs could not
// be stored fails with BlobStoreUnavailableError, never yields an entry. Those writes are made
// durable per batch, together (`flushBlobs`, the barrier before the batch's append).
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { BlobStoreUnavailableError } from '../core/errors.ts';
import type { BlobWrite } from './blob-writes.ts';
import type { FetchMeta } from './email-entry.ts';
import type { ParseAnswer, ParseJob, ParseThreadOptions } from './parse-worker.ts';
import type { PreparedEntry } from './stream-append.ts';

interface Job { settle: (answer: ParseAnswer) => void; reject: (err: Error) => void }

interface Thread { worker: Worker; jobs: Map<number, Job> }

/** Where an entry's blobs were written: its durability barrier goes to that thread's store. */
interface Written { thread: Thread; refs: string[] }

/** A huge message fed to a parse thread chunk by chunk, never whole in memory. */
export interface StreamedParse {
  write(chunk: Buffer): void;
  end(): Promise<PreparedEntry>;
}

export interface ParsePool {
  parse(raw: Buffer, meta: FetchMeta): Promise<PreparedEntry>;
  parseStream(meta: FetchMeta): StreamedParse;
  /**
   * The durability barrier: resolves once every blob these entries refer to is durable in the
   * store; rejects (BlobStoreUnavailableError) when one is not there. Without a store, at once.
   */
  flushBlobs(entries: readonly PreparedEntry[]): Promise<void>;
  readonly threads: number;
  close(): Promise<void>;
}

const view = (buffer: Buffer) => new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);

/** A buffer that owns its whole memory moves to the thread without a copy (and leaves ours at once). */
function movable(buffer: Buffer): ArrayBuffer[] {
  const owns = buffer.byteOffset === 0 && buffer.byteLength === buffer.buffer.byteLength && !(buffer.buffer instanceof SharedArrayBuffer);
  return owns ? [buffer.buffer as ArrayBuffer] : [];
}

/** PARSE_THREADS=0: one per core beyond the main thread, at least one. */
export function parseThreadCount(setting: number): number {
  return setting > 0 ? setting : Math.max(1, availableParallelism() - 1);
}

export interface ParsePoolHooks {
  /** Every blob put of a message, successful or not, once the message is done. */
  onBlobWrites?(writes: readonly BlobWrite[]): void;
}

function failure(msg: Extract<ParseAnswer, { kind: 'failed' }>): Error {
  if (msg.code === 'ERR_BLOB_STORE_UNAVAILABLE') return new BlobStoreUnavailableError(msg.error);
  return new Error(`parse thread: ${msg.error}`);
}

export function createParsePool(threads: number, options: ParseThreadOptions, hooks: ParsePoolHooks = {}): ParsePool {
  let nextId = 0;
  let closing = false;
  const pool: Thread[] = [];
  const written = new WeakMap<PreparedEntry, Written>();

  const spawn = (): Thread => {
    // A small young generation keeps the thread's footprint low: with 8 MB, a 25 MB attachment kept
    // the whole producer near 250 MB RSS, with V8's default near 300 MB. 4 MB: one mailbox with 20
    // emails/s peaked at about 180 MB instead of 220 (with MALLOC_ARENA_MAX=2, as the units set),
    // and the thread parsed as fast as with 8 (its allocations are short-lived).
    const worker = new Worker(new URL('./parse-worker.ts', import.meta.url), { workerData: options, resourceLimits: { maxYoungGenerationSizeMb: 4 } });
    const thread: Thread = { worker, jobs: new Map() };
    thread.worker.on('message', (msg: ParseAnswer) => {
      const job = thread.jobs.get(msg.id);
      thread.jobs.delete(msg.id);
      if (msg.kind !== 'flushed' && msg.blobWrites.length > 0) hooks.onBlobWrites?.(msg.blobWrites);
      if (msg.kind === 'failed') job?.reject(failure(msg));
      else job?.settle(msg);
    });
    const fail = (err: Error) => {
      for (const job of thread.jobs.values()) job.reject(err);
      thread.jobs.clear();
      const index = pool.indexOf(thread);
      if (index >= 0 && !closing) pool[index] = spawn();
    };
    thread.worker.on('error', fail);
    thread.worker.on('exit', (code) => { if (!closing) fail(new Error(`parse thread exited with code ${code}`)); });
    return thread;
  };
  for (let i = 0; i < threads; i++) pool.push(spawn());

  const job = (thread: Thread) => {
    const id = nextId++;
    const answered = new Promise<ParseAnswer>((settle, reject) => thread.jobs.set(id, { settle, reject }));
    return { id, answered };
  };

  /** A parse on the least-busy thread. */
  const enqueue = () => {
    const thread = pool.reduce((best, t) => (t.jobs.size < best.jobs.size ? t : best), pool[0]!);
    const { id, answered } = job(thread);
    const done = answered.then((msg) => {
      if (msg.kind !== 'parsed') throw new Error(`parse thread: a parse answered ${msg.kind}`);
      const refs = msg.blobWrites.flatMap((w) => (w.ref ? [w.ref] : []));
      if (refs.length > 0) written.set(msg.entry, { thread, refs });
      return msg.entry;
    });
    return { thread, id, done };
  };

  return {
    threads,
    parse(raw, meta) {
      const { thread, id, done } = enqueue();
      // A buffer that owns its whole memory moves to the thread without a copy.
      thread.worker.postMessage({ kind: 'whole', id, raw: view(raw), meta } satisfies ParseJob, movable(raw));
      return done;
    },
    parseStream(meta) {
      const { thread, id, done } = enqueue();
      const post = (job: ParseJob) => thread.worker.postMessage(job);
      post({ kind: 'begin', id, meta });
      return {
        write: (chunk) => thread.worker.postMessage({ kind: 'chunk', id, chunk: view(chunk) } satisfies ParseJob, movable(chunk)),
        end: () => { post({ kind: 'end', id }); return done; },
      };
    },
    async flushBlobs(entries) {
      const byThread = new Map<Thread, string[]>();
      for (const entry of entries) {
        const blobs = written.get(entry);
        if (!blobs) continue;
        // A thread that died since took its unsynced writes along: another thread's store finds
        // each object on disk (and syncs it) or reports it missing.
        const thread = pool.includes(blobs.thread) ? blobs.thread : pool[0]!;
        const refs = byThread.get(thread) ?? [];
        refs.push(...blobs.refs);
        byThread.set(thread, refs);
      }
      await Promise.all([...byThread].map(([thread, refs]) => {
        const { id, answered } = job(thread);
        thread.worker.postMessage({ kind: 'flush', id, refs } satisfies ParseJob);
        return answered;
      }));
    },
    async close() {
      closing = true;
      await Promise.all(pool.map((t) => t.worker.terminate()));
    },
  };
}
