// Redis connections. One factory for every connection mailstream opens, so reconnect policy,
// TLS, ACL credentials and our Lua scripts are the same everywhere. A blocking XREADGROUP holds
// its whole connection, so read loops ask for a connection of their own (`purpose: 'blocking'`).
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { backoffDelay } from './backoff.ts';
import type { Logger } from './logger.ts';
import { defineScripts, scriptsWithCallerKeyCount } from './scripts.ts';

export type RedisClient = Redis | Cluster;

export interface RedisConnectOptions {
  url: string;
  /** Redis Cluster seed nodes (host:port); credentials and TLS still come from `url`. */
  clusterNodes?: readonly string[] | undefined;
  /** Shown in CLIENT LIST, e.g. `mailstream:worker:read`. */
  name: string;
  logger?: Logger;
  /** `blocking`: for XREADGROUP BLOCK loops; never auto-pipelined. */
  purpose?: 'command' | 'blocking';
  /**
   * Commands queued while Redis is away fail after this many reconnect attempts; null waits for
   * ever (daemons, guarded by breakers); a number suits one-shot CLI commands.
   * @default null
   */
  maxRetriesPerRequest?: number | null;
  /** Don't connect before the first command. @default false */
  lazyConnect?: boolean;
}

/** Reconnect delay: 50 ms doubling to 5 s, with jitter; ioredis calls this after each failure. */
export function reconnectDelay(times: number): number {
  return backoffDelay(times, { baseMs: 50, maxMs: 5_000, jitter: 0.3 });
}

function optionsFromUrl(url: string): RedisOptions {
  const u = new URL(url);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0;
  return {
    host: u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: Number.isFinite(db) ? db : 0,
    tls: u.protocol === 'rediss:' ? { servername: u.hostname } : undefined,
  };
}

export function createRedis(options: RedisConnectOptions): RedisClient {
  const base = optionsFromUrl(options.url);
  const common: RedisOptions = {
    ...base,
    connectionName: options.name,
    retryStrategy: reconnectDelay,
    maxRetriesPerRequest: options.maxRetriesPerRequest === undefined ? null : options.maxRetriesPerRequest,
    enableAutoPipelining: options.purpose !== 'blocking',
    autoPipeliningIgnoredCommands: scriptsWithCallerKeyCount(),
    lazyConnect: options.lazyConnect ?? false,
  };
  let client: RedisClient;
  if (options.clusterNodes && options.clusterNodes.length > 0) {
    const nodes = options.clusterNodes.map((n) => {
      const [host, port] = n.split(':');
      return { host: host ?? '127.0.0.1', port: Number(port ?? 6379) };
    });
    const { host: _h, port: _p, db: _d, ...redisOptions } = common;
    client = new Cluster(nodes, {
      redisOptions,
      clusterRetryStrategy: reconnectDelay,
      enableAutoPipelining: options.purpose !== 'blocking',
      autoPipeliningIgnoredCommands: scriptsWithCallerKeyCount(),
      lazyConnect: options.lazyConnect ?? false,
    });
  } else {
    client = new Redis(common);
  }
  defineScripts(client);
  attachErrorLogging(client, options);
  return client;
}

/** An 'error' listener is mandatory (an unhandled one kills the process); log each kind once per outage. */
function attachErrorLogging(client: RedisClient, options: RedisConnectOptions): void {
  let lastMessage = '';
  client.on('error', (err: Error) => {
    if (err.message === lastMessage) return;
    lastMessage = err.message;
    options.logger?.warn({ err, connection: options.name }, 'redis connection error');
  });
  client.on('ready', () => {
    if (lastMessage) options.logger?.info({ connection: options.name }, 'redis connection restored');
    lastMessage = '';
  });
}

/** Closes a connection politely, falling back to a hard disconnect if Redis does not answer. */
export async function closeRedis(client: RedisClient, timeoutMs = 2_000): Promise<void> {
  if (client.status === 'end') return;
  const timer = setTimeout(() => client.disconnect(), timeoutMs);
  try {
    await client.quit();
  } catch {
    client.disconnect();
  } finally {
    clearTimeout(timer);
  }
}

/** Server version as [major, minor, patch], for features newer than Redis 7.0. */
export async function redisVersion(client: RedisClient): Promise<[number, number, number]> {
  const node = client instanceof Cluster ? client.nodes('master')[0] ?? client : client;
  const info = await (node as Redis).info('server');
  const match = /redis_version:(\d+)\.(\d+)\.(\d+)/.exec(info);
  return match ? [Number(match[1]), Number(match[2]), Number(match[3])] : [0, 0, 0];
}

/** Evicted keys would be lost mail state; returns the policy so callers can warn. */
export async function maxmemoryPolicy(client: RedisClient): Promise<string | undefined> {
  try {
    const node = client instanceof Cluster ? client.nodes('master')[0] ?? client : client;
    const reply = (await (node as Redis).config('GET', 'maxmemory-policy')) as string[];
    return reply[1];
  } catch {
    return undefined; // CONFIG may be refused by ACL (managed Redis); nothing to conclude.
  }
}
