// A parse thread: receives raw messages (whole, or streamed in chunks for huge ones) with their
// IMAP metadata, answers serialised entries.
import { parentPort, workerData } from 'node:worker_threads';
import { buildEntry, EntryBuilder, type EntryOptions, type FetchMeta } from './email-entry.ts';

export type ParseJob =
  | { kind: 'whole'; id: number; raw: Uint8Array; meta: FetchMeta }
  | { kind: 'begin'; id: number; meta: FetchMeta }
  | { kind: 'chunk'; id: number; chunk: Uint8Array }
  | { kind: 'end'; id: number };

const options = workerData as EntryOptions;
const streaming = new Map<number, EntryBuilder>();

const asBuffer = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

function answer(id: number, work: Promise<unknown>): void {
  work.then(
    (entry) => parentPort!.postMessage({ id, entry }),
    (err: unknown) => parentPort!.postMessage({ id, error: (err as Error).message }),
  );
}

parentPort!.on('message', (job: ParseJob) => {
  switch (job.kind) {
    case 'whole':
      return answer(job.id, buildEntry(asBuffer(job.raw), job.meta, options));
    case 'begin':
      streaming.set(job.id, new EntryBuilder(job.meta, options));
      return;
    case 'chunk':
      streaming.get(job.id)?.write(asBuffer(job.chunk));
      return;
    case 'end': {
      const builder = streaming.get(job.id);
      streaming.delete(job.id);
      return answer(job.id, builder ? builder.finish() : Promise.reject(new Error('unknown streamed message')));
    }
  }
});
