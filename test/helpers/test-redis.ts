// The Redis a test runs against: a private redis-server, or a private 3-master Redis Cluster when
// MAILSTREAM_TEST_REDIS=cluster (CI runs the Redis-facing suites both ways). Both have the shape of
// RedisServer, so a suite switches by changing its start-up line only:
// - `url` is a node's address; daemons started through helpers/cli.ts with that REDIS_URL also get
//   REDIS_CLUSTER_NODES (see clusterNodesFor), and `env` spells both out for anything else;
// - `client()` is typed as a plain Redis; on a cluster it is an ioredis Cluster whose key-listing
//   and flushing commands cover every master, so assertions read the same both ways.
import { Cluster, Redis } from 'ioredis';
import { startRedisCluster, type RedisCluster } from './redis-cluster.ts';
import { startRedisServer, type RedisServer } from './redis-server.ts';

export type TestRedisKind = 'single' | 'cluster';

export interface TestRedis {
  kind: TestRedisKind;
  url: string;
  /** REDIS_URL, plus REDIS_CLUSTER_NODES for a cluster. */
  env: { REDIS_URL: string; REDIS_CLUSTER_NODES?: string };
  /** A fresh client (the caller closes it). */
  client(): Redis;
  /** Every server process at once (a whole-Redis outage); with AOF the data comes back on start. */
  stop(): Promise<void>;
  kill(): Promise<void>;
  start(): Promise<void>;
  restart(): Promise<void>;
  destroy(): Promise<void>;
  /** Set for a single server. */
  server?: RedisServer;
  /** Set for a cluster. */
  cluster?: RedisCluster;
}

export interface TestRedisOptions {
  aof?: boolean;
  /** AOF fsync policy; the helpers default to `always` (nothing acknowledged is ever lost). */
  appendfsync?: 'always' | 'everysec';
  /** Overrides MAILSTREAM_TEST_REDIS. */
  kind?: TestRedisKind;
}

const clusters = new Map<string, string>();

/** REDIS_CLUSTER_NODES for a REDIS_URL that points at a running test cluster, else undefined. */
export function clusterNodesFor(url: string): string | undefined {
  return clusters.get(url);
}

export function testRedisKind(env: NodeJS.ProcessEnv = process.env): TestRedisKind {
  return env.MAILSTREAM_TEST_REDIS === 'cluster' ? 'cluster' : 'single';
}

/** A cluster client on which KEYS, FLUSHALL, FLUSHDB and DBSIZE answer for the whole cluster. */
function wholeClusterClient(cluster: RedisCluster): Redis {
  const client = cluster.client();
  const masters = () => client.nodes('master');
  const over = client as unknown as Record<string, unknown>;
  over.keys = async (pattern: string) => (await Promise.all(masters().map((n) => n.keys(pattern)))).flat();
  over.flushall = async () => { await Promise.all(masters().map((n) => n.flushall())); return 'OK'; };
  over.flushdb = async () => { await Promise.all(masters().map((n) => n.flushdb())); return 'OK'; };
  over.dbsize = async () => (await Promise.all(masters().map((n) => n.dbsize()))).reduce((a, b) => a + b, 0);
  return client as unknown as Redis;
}

export async function startTestRedis(options: TestRedisOptions = {}): Promise<TestRedis> {
  const kind = options.kind ?? testRedisKind();
  if (kind === 'cluster') {
    const extraArgs = options.appendfsync ? ['--appendfsync', options.appendfsync] : [];
    const cluster = await startRedisCluster({ aof: options.aof ?? false, extraArgs });
    const url = `redis://${cluster.seeds[0]}`;
    const nodes = cluster.seeds.join(',');
    clusters.set(url, nodes);
    const each = (fn: (n: RedisServer) => Promise<void>) => Promise.all(cluster.nodes.map(fn)).then(() => undefined);
    return {
      kind, url, cluster,
      env: { REDIS_URL: url, REDIS_CLUSTER_NODES: nodes },
      client: () => wholeClusterClient(cluster),
      stop: () => each((n) => n.stop()),
      kill: () => each((n) => n.kill()),
      async start() { await each((n) => n.start()); await cluster.waitHealthy(); },
      restart: () => cluster.restart(),
      async destroy() { clusters.delete(url); await cluster.destroy(); },
    };
  }
  const server = await startRedisServer({ aof: options.aof ?? false, extraArgs: options.appendfsync ? ['--appendfsync', options.appendfsync] : [] });
  return {
    kind, url: server.url, server,
    env: { REDIS_URL: server.url },
    client: () => server.client(),
    stop: () => server.stop(),
    kill: () => server.kill(),
    start: () => server.start(),
    restart: () => server.restart(),
    destroy: () => server.destroy(),
  };
}
