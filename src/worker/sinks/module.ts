// Module sink: a user's ESM file exporting `handle(email, ctx)` and/or `handleBatch(emails, ctx)`,
// optionally `init(ctx)` and `close()` (contract: module-api.ts, module-contract.ts). Each email
// is parsed once; `handle` calls run side by side, at most `concurrency` across every call.
import { pathToFileURL } from 'node:url';
import { ConfigError, MailstreamError } from '../../core/errors.ts';
import type { StreamPayload } from '../../core/entry.ts';
import { deliverEach, InFlightLimit } from './in-flight.ts';
import type { BlobStore } from '../../core/blobs/blob-store.ts';
import { openBlob } from './blob-reads.ts';
import type { BatchContext, BlobReader, SinkModule } from './module-api.ts';
import { messageOf, moduleFunctions, outcomeOfThrow, outcomesOfBatch } from './module-contract.ts';
import { DELIVERED, type Delivery, type Outcome, type Sink, type SinkOptions } from './types.ts';

const NOT_JSON: Outcome = Object.freeze({ status: 'permanent', reason: 'the stream entry\'s email is not valid JSON' });

function parse(delivery: Delivery): StreamPayload | undefined {
  try {
    return JSON.parse(delivery.email) as StreamPayload;
  } catch {
    return undefined;
  }
}

async function load(path: string): Promise<SinkModule> {
  let exported: Record<string, unknown>;
  try {
    exported = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError('SINK_URL', `cannot load module ${path}: ${(err as Error).message}`);
  }
  const checked = moduleFunctions(exported);
  if ('problem' in checked) throw new ConfigError('SINK_URL', `module ${path}: ${checked.problem}`);
  return checked.functions;
}

async function viaHandle(handle: NonNullable<SinkModule['handle']>, delivery: Delivery, signal: AbortSignal, blobs: BlobReader): Promise<Outcome> {
  const email = parse(delivery);
  if (!email) return NOT_JSON;
  try {
    await handle(email, { idempotencyKey: delivery.key, entryId: delivery.id, type: delivery.type ?? 'message.new', account: delivery.account, attempt: delivery.previousAttempts + 1, signal, blobs });
    return DELIVERED;
  } catch (err) {
    return outcomeOfThrow(err);
  }
}

async function viaHandleBatch(handleBatch: NonNullable<SinkModule['handleBatch']>, batch: readonly Delivery[], signal: AbortSignal, blobs: BlobReader): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  const emails: StreamPayload[] = [];
  /** Where in the batch each email handed over sits (emails that are not JSON are not handed over). */
  const positions: number[] = [];
  const ctx: BatchContext = { account: batch[0]?.account ?? '', deliveries: [], signal, blobs };
  for (const [i, delivery] of batch.entries()) {
    const email = parse(delivery);
    outcomes.push(email ? DELIVERED : NOT_JSON);
    if (!email) continue;
    emails.push(email);
    positions.push(i);
    ctx.deliveries.push({ idempotencyKey: delivery.key, entryId: delivery.id, type: delivery.type ?? 'message.new', attempt: delivery.previousAttempts + 1 });
  }
  if (emails.length === 0) return outcomes;
  let answered: Outcome[];
  try {
    answered = outcomesOfBatch(await handleBatch(emails, ctx), emails.length);
  } catch (err) {
    const outcome = outcomeOfThrow(err);
    answered = emails.map(() => outcome);
  }
  positions.forEach((at, i) => { outcomes[at] = answered[i]!; });
  return outcomes;
}

type DeliverBatch = (batch: readonly Delivery[], signal: AbortSignal) => Promise<Outcome[]>;

/** `handleBatch` when the module has it, else `handle` per email under the in-flight limit. */
function batchDeliverer(path: string, handler: SinkModule, limit: InFlightLimit, blobs: BlobReader): DeliverBatch {
  const { handle, handleBatch } = handler;
  if (handleBatch) return (batch, signal) => viaHandleBatch(handleBatch, batch, signal, blobs);
  if (handle) return (batch, signal) => deliverEach(batch, limit, signal, (delivery) => viaHandle(handle, delivery, signal, blobs));
  throw new ConfigError('SINK_URL', `module ${path}: it exports neither handle(email, ctx) nor handleBatch(emails, ctx)`);
}

/** ctx.blobs: the worker's store, or one that says there is none. */
export function blobReader(store: BlobStore | null): BlobReader {
  return { open: (ref) => openBlob(store, ref) };
}

/**
 * Loads the module and runs its `init`; a module that cannot serve stops start-up here. `store`
 * is read through ctx.blobs; it is not the module sink's to close (see withBlobs).
 */
export async function createModuleSink(url: string, options: SinkOptions, store: BlobStore | null = null): Promise<Sink> {
  const path = decodeURIComponent(new URL(url).pathname);
  const handler = await load(path);
  const deliverBatch = batchDeliverer(path, handler, new InFlightLimit(options.concurrency), blobReader(store));
  const lifetime = new AbortController();
  if (handler.init) {
    try {
      await handler.init({ signal: lifetime.signal });
    } catch (err) {
      // Not a ConfigError: what init needs (a database, a token) may well be back after a restart.
      throw new MailstreamError('ERR_MODULE_INIT', `SINK_URL: init() of module ${path} failed: ${messageOf(err)}`, { cause: err });
    }
  }
  let closing: Promise<void> | undefined;

  return {
    kind: 'module',
    deliver: async (batch, signal) => (batch.length === 0 ? [] : deliverBatch(batch, signal)),
    async check() {},
    close() {
      closing ??= (async () => {
        lifetime.abort();
        await handler.close?.();
      })();
      return closing;
    },
  };
}
