// A parse thread: receives raw messages with their IMAP metadata, answers serialised entries.
import { parentPort, workerData } from 'node:worker_threads';
import { buildEntry, type EntryOptions, type FetchMeta } from './email-entry.ts';

const options = workerData as EntryOptions;

parentPort!.on('message', (job: { id: number; raw: Uint8Array; meta: FetchMeta }) => {
  const raw = Buffer.from(job.raw.buffer, job.raw.byteOffset, job.raw.byteLength);
  buildEntry(raw, job.meta, options).then(
    (entry) => parentPort!.postMessage({ id: job.id, entry }),
    (err: unknown) => parentPort!.postMessage({ id: job.id, error: (err as Error).message }),
  );
});
