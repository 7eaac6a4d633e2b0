// JSONL file sink: one line per email, appended a batch at a time and fsynced before the batch is
// acknowledged, so an acknowledged email is on disk.
import { mkdirSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TransientDeliveryError } from '../../core/errors.ts';
import type { Sink } from './types.ts';

/** The producer writes compact JSON (no raw newline); anything else is re-serialised to one line. */
function oneLine(email: string): string {
  return email.includes('\n') ? JSON.stringify(JSON.parse(email)) : email;
}

export function createJsonlSink(url: string): Sink {
  const path = fileURLToPath(url);
  let handle: FileHandle | undefined;

  async function file(): Promise<FileHandle> {
    if (!handle) {
      mkdirSync(dirname(path), { recursive: true });
      handle = await open(path, 'a', 0o640);
    }
    return handle;
  }

  return {
    kind: 'jsonl',
    mode: 'batch',
    async deliver(deliveries) {
      const text = deliveries.map((d) => oneLine(d.email)).join('\n') + '\n';
      try {
        const f = await file();
        await f.appendFile(text);
        await f.sync();
      } catch (err) {
        const h = handle;
        handle = undefined;
        await h?.close().catch(() => undefined);
        throw new TransientDeliveryError(`cannot append to ${path}: ${(err as Error).message}`, { cause: err, code: 'ERR_JSONL_WRITE' });
      }
    },
    async check() { await file(); },
    async close() { await handle?.close(); handle = undefined; },
  };
}
