// A private redis-server for tests: the product's local Redis (src/ops/local/local-redis.ts),
// started through spawnTracked so a suite can check that it stopped it.
import { startLocalRedis, type LocalRedis, type LocalRedisOptions } from '../../src/ops/local/local-redis.ts';
import { spawnTracked } from './processes.ts';

export type RedisServerOptions = Omit<LocalRedisOptions, 'spawn'>;
export type RedisServer = LocalRedis;

export function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  return startLocalRedis({ ...options, spawn: spawnTracked });
}
