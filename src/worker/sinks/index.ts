// Picks the sink from SINK_URL's scheme.
import type { Config } from '../../config/load.ts';
import { ConfigError } from '../../core/errors.ts';
import { createJsonlSink } from './jsonl.ts';
import { createModuleSink } from './module.ts';
import { createPostgresSink } from './postgres.ts';
import type { Sink } from './types.ts';
import { createWebhookSink } from './webhook.ts';

export async function createSink(worker: Config['worker']): Promise<Sink> {
  const protocol = new URL(worker.sinkUrl).protocol;
  switch (protocol) {
    case 'http:':
    case 'https:':
      return createWebhookSink({ url: worker.sinkUrl, secret: worker.webhookSecret, timeoutMs: worker.webhookTimeoutMs });
    case 'postgres:':
    case 'postgresql:':
      return createPostgresSink(worker.sinkUrl);
    case 'file:':
      return createJsonlSink(worker.sinkUrl);
    case 'module:':
      return createModuleSink(worker.sinkUrl);
    default:
      throw new ConfigError('SINK_URL', `unsupported scheme ${protocol}`);
  }
}
