// The Redis a test runs against: a private redis-server, or a private 3-master Redis Cluster when
// MAILSTREAM_TEST_REDIS=cluster (CI runs the Redis-facing suites both ways). Tests see one shape:
// the environment the daemons need, a client factory, restart and destroy.
import { Cluster, Redis } from 'ioredis';
import { startRedisCluster, type RedisCluster } from './redis-cluster.ts';
import { startRedisServer, type RedisServer } from './redis-server.ts';

export type TestRedisKind = 'single' | 'cluster';

export interface TestRedis {
  kind: TestRedisKind;
  /** REDIS_URL, plus REDIS_CLUSTER_NODES for a cluster: spread it into a daemon's environment. */
  env: { REDIS_URL: string; REDIS_CLUSTER_NODES?: string };
  /** A fresh client of the right kind (the caller closes it). */
  client(): Redis | Cluster;
  /** Stops and starts every server process; with AOF (the default here) the data comes back. */
  restart(): Promise<void>;
  destroy(): Promise<void>;
  /** Set for a single server. */
  server?: RedisServer;
  /** Set for a cluster. */
  cluster?: RedisCluster;
}

export function testRedisKind(env: NodeJS.ProcessEnv = process.env): TestRedisKind {
  return env.MAILSTREAM_TEST_REDIS === 'cluster' ? 'cluster' : 'single';
}

export async function startTestRedis(options: { aof?: boolean; kind?: TestRedisKind } = {}): Promise<TestRedis> {
  const kind = options.kind ?? testRedisKind();
  if (kind === 'cluster') {
    const cluster = await startRedisCluster({ aof: options.aof ?? true });
    return {
      kind,
      env: { REDIS_URL: `redis://${cluster.seeds[0]}`, REDIS_CLUSTER_NODES: cluster.seeds.join(',') },
      client: () => cluster.client(),
      restart: () => cluster.restart(),
      destroy: () => cluster.destroy(),
      cluster,
    };
  }
  const server = await startRedisServer({ aof: options.aof ?? true });
  return {
    kind,
    env: { REDIS_URL: server.url },
    client: () => server.client(),
    restart: () => server.restart(),
    destroy: () => server.destroy(),
    server,
  };
}
