// Parsing, not IMAP, is the producer's bottleneck (mailparser runs ~1-2.5k msg/s on one core),
// so it runs on worker threads while the main thread keeps fetching and appending. Jobs go to
// the least-busy thread; a thread that dies is replaced and its jobs fail (the batch is retried).
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { EntryOptions, FetchMeta } from './email-entry.ts';
import type { PreparedEntry } from './stream-append.ts';

interface Job { resolve: (e: PreparedEntry) => void; reject: (err: Error) => void }

interface Thread { worker: Worker; jobs: Map<number, Job> }

export interface ParsePool {
  parse(raw: Buffer, meta: FetchMeta): Promise<PreparedEntry>;
  readonly threads: number;
  close(): Promise<void>;
}

/** PARSE_THREADS=0: one per core beyond the main thread, at least one. */
export function parseThreadCount(setting: number): number {
  return setting > 0 ? setting : Math.max(1, availableParallelism() - 1);
}

export function createParsePool(threads: number, options: EntryOptions): ParsePool {
  let nextId = 0;
  let closing = false;
  const pool: Thread[] = [];

  const spawn = (): Thread => {
    const thread: Thread = { worker: new Worker(new URL('./parse-worker.ts', import.meta.url), { workerData: options }), jobs: new Map() };
    thread.worker.on('message', (msg: { id: number; entry?: PreparedEntry; error?: string }) => {
      const job = thread.jobs.get(msg.id);
      thread.jobs.delete(msg.id);
      if (msg.entry) job?.resolve(msg.entry);
      else job?.reject(new Error(`parse thread: ${msg.error}`));
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

  return {
    threads,
    parse(raw, meta) {
      const thread = pool.reduce((best, t) => (t.jobs.size < best.jobs.size ? t : best), pool[0]!);
      const id = nextId++;
      return new Promise<PreparedEntry>((resolve, reject) => {
        thread.jobs.set(id, { resolve, reject });
        // A buffer that owns its whole memory moves to the thread without a copy.
        const owns = raw.byteOffset === 0 && raw.byteLength === raw.buffer.byteLength && !(raw.buffer instanceof SharedArrayBuffer);
        const view = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
        thread.worker.postMessage({ id, raw: view, meta }, owns ? [raw.buffer as ArrayBuffer] : []);
      });
    },
    async close() {
      closing = true;
      await Promise.all(pool.map((t) => t.worker.terminate()));
    },
  };
}
