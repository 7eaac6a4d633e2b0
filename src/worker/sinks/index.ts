// Picks the sink from SINK_URL's scheme. Each sink module is loaded only when chosen, so a worker
// writing JSONL does not carry the PostgreSQL driver in memory.
import type { Config } from '../../config/load.ts';
import { ConfigError } from '../../core/errors.ts';
import type { Sink, SinkOptions } from './types.ts';

export async function createSink(worker: Config['worker'], options: SinkOptions): Promise<Sink> {
  const protocol = new URL(worker.sinkUrl).protocol;
  switch (protocol) {
    case 'http:':
    case 'https:':
      return (await import('./webhook.ts')).createWebhookSink({
        url: worker.sinkUrl, secret: worker.webhookSecret, timeoutMs: worker.webhookTimeoutMs, concurrency: options.concurrency,
      });
    case 'postgres:':
    case 'postgresql:':
      // One statement per batch: a handful of connections serves every account loop.
      return (await import('./postgres.ts')).createPostgresSink(worker.sinkUrl);
    case 'file:':
      return (await import('./jsonl.ts')).createJsonlSink(worker.sinkUrl);
    case 'module:':
      return (await import('./module.ts')).createModuleSink(worker.sinkUrl, options);
    default:
      throw new ConfigError('SINK_URL', `unsupported scheme ${protocol}`);
  }
}
