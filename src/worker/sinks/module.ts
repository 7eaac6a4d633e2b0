// Module sink: a user ESM file exporting `handle(email, ctx)` (see module-api.ts). The email is
// parsed once per delivery; whatever the handler throws decides retry or DLQ like any sink error.
import { pathToFileURL } from 'node:url';
import { ConfigError } from '../../core/errors.ts';
import type { EmailEntry } from '../../core/entry.ts';
import type { HandlerContext } from './module-api.ts';
import type { Sink } from './types.ts';

type Handler = (email: EmailEntry, ctx: HandlerContext) => unknown;

export async function createModuleSink(url: string): Promise<Sink> {
  const path = decodeURIComponent(new URL(url).pathname);
  let handle: Handler;
  try {
    const loaded = (await import(pathToFileURL(path).href)) as { handle?: unknown; default?: { handle?: unknown } };
    const candidate = loaded.handle ?? loaded.default?.handle;
    if (typeof candidate !== 'function') throw new Error('it does not export a function `handle(email, ctx)`');
    handle = candidate as Handler;
  } catch (err) {
    throw new ConfigError('SINK_URL', `cannot load module ${path}: ${(err as Error).message}`);
  }
  return {
    kind: 'module',
    mode: 'each',
    async deliver(deliveries, signal) {
      for (const d of deliveries) {
        await handle(JSON.parse(d.email) as EmailEntry, {
          idempotencyKey: d.key, entryId: d.id, account: d.account, attempt: d.previousAttempts + 1, signal,
        });
      }
    },
    async check() {},
    async close() {},
  };
}
