// Picks the sink from SINK_URL's scheme. Each sink module is loaded only when chosen, so a worker
// writing JSONL does not carry the PostgreSQL driver in memory. With a blob store the sink is
// wrapped so it gets what the store holds for its emails (blob-bodies.ts).
import type { Config } from '../../config/load.ts';
import { openBlobStore } from '../../core/blobs/open-store.ts';
import type { Metrics } from '../../core/metrics.ts';
import { measuredReads } from './blob-read-metrics.ts';
import type { BlobStore } from '../../core/blobs/blob-store.ts';
import { ConfigError } from '../../core/errors.ts';
import { webhookAttachments } from './attachments-webhook.ts';
import { wholeBodies, withBlobs, type EmailRewrite } from './blob-bodies.ts';
import type { Sink, SinkKind, SinkOptions } from './types.ts';

function kindOf(sinkUrl: string): SinkKind {
  const protocol = new URL(sinkUrl).protocol;
  switch (protocol) {
    case 'http:':
    case 'https:':
      return 'webhook';
    case 'postgres:':
    case 'postgresql:':
      return 'postgres';
    case 'file:':
      return 'jsonl';
    case 'module:':
      return 'module';
    default:
      throw new ConfigError('SINK_URL', `unsupported scheme ${protocol}`);
  }
}

async function createPlainSink(kind: SinkKind, worker: Config['worker'], options: SinkOptions, store: BlobStore | null): Promise<Sink> {
  switch (kind) {
    case 'webhook':
      return (await import('./webhook.ts')).createWebhookSink({
        url: worker.sinkUrl, secret: worker.webhookSecret, timeoutMs: worker.webhookTimeoutMs, concurrency: options.concurrency,
      });
    case 'postgres':
      // One statement per batch: a handful of connections serves every account loop.
      return (await import('./postgres.ts')).createPostgresSink(worker.sinkUrl);
    case 'jsonl':
      return (await import('./jsonl.ts')).createJsonlSink(worker.sinkUrl);
    case 'module':
      return (await import('./module.ts')).createModuleSink(worker.sinkUrl, options, store);
  }
}

/** What the sink needs done to emails before it gets them; empty when it needs nothing. */
function rewritesFor(kind: SinkKind, worker: Config['worker'], store: BlobStore | null): EmailRewrite[] {
  const rewrites: EmailRewrite[] = [];
  if (worker.bodies === 'whole') rewrites.push(wholeBodies(worker.maxBodyBytes));
  if (kind === 'webhook') {
    const links = webhookAttachments(store, { mode: worker.webhookAttachments, inlineMaxBytes: worker.webhookInlineMaxBytes, urlTtlSeconds: worker.blobUrlTtlSeconds });
    if (links) rewrites.push(links);
  }
  return rewrites;
}

export async function createSink(config: Pick<Config, 'worker' | 'blobs'>, options: SinkOptions): Promise<Sink> {
  const { worker } = config;
  const kind = kindOf(worker.sinkUrl);
  if (kind === 'webhook' && worker.webhookAttachments === 'inline' && config.blobs.store.kind === 'none') {
    throw new ConfigError('WEBHOOK_ATTACHMENTS', 'inline reads attachments from the blob store: set BLOB_STORE_URL as for the producer');
  }
  // The store is opened only for a sink that reads it: the bodies, the webhook's links, a module's ctx.blobs.
  const needsStore = worker.bodies === 'whole' || kind === 'module' || (kind === 'webhook' && worker.webhookAttachments !== 'refs');
  const opened = needsStore ? await openBlobStore(config.blobs.store) : null;
  const store = opened ? measuredReads(opened) : null;
  try {
    const sink = await createPlainSink(kind, worker, options, store);
    const rewrites = rewritesFor(kind, worker, store);
    if (rewrites.length === 0 && !store) return sink;
    const wrapped = withBlobs(sink, store, rewrites, { concurrency: options.concurrency });
    return store ? Object.assign(wrapped, { useMetrics: (metrics: Metrics) => store.useMetrics(metrics) }) : wrapped;
  } catch (err) {
    await store?.close();
    throw err;
  }
}
