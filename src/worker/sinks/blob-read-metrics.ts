// The worker's reads from the blob store, measured: every object a sink reads (whole bodies, the
// webhook's inline attachments, a module's ctx.blobs.open) is counted by result, its bytes added
// up, and its time from the open to the end of the read (or the reader letting go) observed. The
// store is opened before the daemon's metrics exist, so the counting starts once they are given.
import { Transform, pipeline, type Readable } from 'node:stream';
import { overriding, type BlobStore } from '../../core/blobs/blob-store.ts';
import { BlobNotFoundError } from '../../core/errors.ts';
import type { Metrics } from '../../core/metrics.ts';

type ReadMetrics = Pick<Metrics, 'blobReads' | 'blobReadBytes' | 'blobReadDuration'>;

export interface MeasuredStore extends BlobStore {
  useMetrics(metrics: ReadMetrics): void;
}

/** A reader that stops early (a body cut at MAX_BODY_BYTES) or a shutdown's abort is no failure. */
const letGo = (err: NodeJS.ErrnoException) => err.code === 'ERR_STREAM_PREMATURE_CLOSE' || err.name === 'AbortError';

export function measuredReads(store: BlobStore): MeasuredStore {
  let metrics: ReadMetrics | undefined;
  const open = async (ref: string): Promise<Readable> => {
    const endTimer = metrics?.blobReadDuration.startTimer();
    let source: Readable;
    try {
      source = await store.open(ref);
    } catch (err) {
      metrics?.blobReads.inc({ result: err instanceof BlobNotFoundError ? 'missing' : 'unavailable' });
      throw err;
    }
    if (!metrics) return source;
    const counting = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        metrics?.blobReadBytes.inc(chunk.length);
        done(null, chunk);
      },
    });
    // The read is judged by what the reader saw: the end (ok), letting go first (ok), or an error
    // reaching it (unavailable). A connection reset after the last byte is read counts for nothing.
    let settled = false;
    const settle = (result: 'ok' | 'unavailable') => {
      if (settled) return;
      settled = true;
      endTimer?.();
      metrics?.blobReads.inc({ result });
    };
    counting.once('end', () => settle('ok'));
    counting.once('error', (err: NodeJS.ErrnoException) => settle(letGo(err) ? 'ok' : 'unavailable'));
    counting.once('close', () => settle('ok'));
    // Destroying what the reader holds destroys the source too (a file or a download let go).
    pipeline(source, counting, () => undefined);
    return counting;
  };
  return {
    ...overriding(store, { open }),
    useMetrics(given) {
      metrics = given;
      for (const result of ['ok', 'missing', 'unavailable'] as const) given.blobReads.inc({ result }, 0);
    },
  };
}
