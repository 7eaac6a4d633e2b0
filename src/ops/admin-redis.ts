// The Redis connection of a one-shot admin command: connect first and fail at once with a plain
// message (where, why, which setting) instead of a stack trace; no connection log lines, so that
// `--json` output stays machine-readable.
import type { Config } from '../config/load.ts';
import { MailstreamError } from '../core/errors.ts';
import { closeRedis, createRedis, type RedisClient } from '../core/redis.ts';

export class RedisUnavailableError extends MailstreamError {
  constructor(where: string, reason: string) {
    super('ERR_REDIS_UNAVAILABLE', `Redis at ${where} does not answer (${reason}): is it running, and is REDIS_URL right?`);
  }
}

/** host:port only: the URL may carry a password. */
function where(config: Readonly<Config>): string {
  if (config.redis.clusterNodes?.length) return config.redis.clusterNodes.join(',');
  const url = new URL(config.redis.url);
  return `${url.hostname}:${url.port || 6379}`;
}

export async function connectAdminRedis(config: Readonly<Config>, name: string): Promise<RedisClient> {
  const redis = createRedis({ url: config.redis.url, clusterNodes: config.redis.clusterNodes, name, maxRetriesPerRequest: 1, lazyConnect: true });
  let lastError = '';
  redis.on('error', (err: Error) => { lastError = (err as Error & { code?: string }).code ?? err.message; });
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    redis.disconnect();
    throw new RedisUnavailableError(where(config), lastError || (err as Error).message);
  }
  return redis;
}

export { closeRedis };
