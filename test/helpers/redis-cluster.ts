// A private Redis Cluster: 3 masters and 3 replicas of redis-server on free loopback ports, made
// with `redis-cli --cluster create`. Nodes can be stopped, killed and started again (they keep
// their nodes.conf and AOF), and a master can be failed over to its replica, so tests can check
// that every script stays in one slot and that ingestion survives a failover.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import { freePort, isPortFree } from '../../src/ops/local/ports.ts';
import { startRedisServer, type RedisServer } from './redis-server.ts';
import { eventually } from './ports.ts';

const run = promisify(execFile);

export interface ClusterNodeInfo {
  id: string;
  port: number;
  role: 'master' | 'replica';
  /** For a replica, the id of its master. */
  masterId: string | undefined;
  connected: boolean;
  failed: boolean;
  /** Slot ranges served, for a master. */
  slots: string[];
}

export interface RedisCluster {
  nodes: RedisServer[];
  /** `host:port` of every node (the REDIS_CLUSTER_NODES value). */
  seeds: string[];
  /** A fresh cluster client (the caller closes it). */
  client(): Cluster;
  /** The cluster's view as the first reachable node sees it. */
  topology(): Promise<ClusterNodeInfo[]>;
  /** The node serving the slot of `key` as master now. */
  masterOf(key: string): Promise<RedisServer>;
  /** Promotes a replica of the master on `port` (CLUSTER FAILOVER: no acknowledged write is lost). */
  failover(port: number): Promise<RedisServer>;
  /** Resolves once every live node reports cluster_state:ok and all slots are served. */
  waitHealthy(): Promise<void>;
  /** Restarts every node (with AOF, the data comes back). */
  restart(): Promise<void>;
  destroy(): Promise<void>;
}

export interface RedisClusterOptions {
  /** Masters (at least 3 for redis-cli); each gets `replicas` replicas. @default 3 */
  masters?: number;
  /** @default 1 */
  replicas?: number;
  aof?: boolean;
  /** Further redis-server arguments for every node. */
  extraArgs?: string[];
}

function direct(port: number): Redis {
  return new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1, retryStrategy: () => null, lazyConnect: true });
}

async function ask<T>(port: number, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = direct(port);
  try {
    await r.connect();
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

function parseNodes(text: string, nodes: RedisServer[]): ClusterNodeInfo[] {
  return text.trim().split('\n').map((line) => {
    const [id, address, flags, master, , , , link, ...slots] = line.split(' ');
    const port = Number(address!.split('@')[0]!.split(':')[1]);
    const flagList = flags!.split(',');
    return {
      id: id!,
      port,
      role: flagList.includes('master') ? 'master' as const : 'replica' as const,
      masterId: master === '-' ? undefined : master,
      connected: link === 'connected',
      failed: flagList.includes('fail') || flagList.includes('fail?'),
      slots,
    };
  }).filter((n) => nodes.some((s) => s.port === n.port));
}

/**
 * A port a cluster node can take: its cluster bus listens 10,000 higher, so the port must be at
 * most 55535 (redis-server refuses more; the kernel hands out free ports up to 60999) and that bus
 * port must be free too.
 */
async function clusterPort(): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (port <= 55_535 && await isPortFree(port + 10_000)) return port;
  }
}

export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisCluster> {
  const masters = options.masters ?? 3;
  const replicas = options.replicas ?? 1;
  const nodes: RedisServer[] = [];
  // A short node timeout makes an unplanned failover take about a second instead of fifteen.
  const extraArgs = ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '1000', ...(options.extraArgs ?? [])];
  for (let i = 0; i < masters * (1 + replicas); i++) nodes.push(await startRedisServer({ aof: options.aof ?? true, extraArgs, choosePort: clusterPort }));
  const seeds = nodes.map((n) => `127.0.0.1:${n.port}`);
  await run('redis-cli', ['--cluster', 'create', ...seeds, '--cluster-replicas', String(replicas), '--cluster-yes']);

  const live = async () => {
    const up: RedisServer[] = [];
    for (const node of nodes) {
      if (await ask(node.port, (r) => r.ping()).then(() => true, () => false)) up.push(node);
    }
    return up;
  };

  const cluster: RedisCluster = {
    nodes,
    seeds,
    client: () => new Cluster(nodes.map((n) => ({ host: '127.0.0.1', port: n.port })), {
      redisOptions: { maxRetriesPerRequest: 3 },
      clusterRetryStrategy: () => 100,
    }),
    async topology() {
      for (const node of await live()) {
        const text = await ask(node.port, (r) => r.cluster('NODES') as Promise<string>).catch(() => undefined);
        if (text) return parseNodes(text, nodes);
      }
      throw new Error('no cluster node answers');
    },
    async masterOf(key) {
      const slot = await ask(nodes[0]!.port, (r) => r.cluster('KEYSLOT', key) as Promise<number>)
        .catch(async () => ask((await live())[0]!.port, (r) => r.cluster('KEYSLOT', key) as Promise<number>));
      const view = await cluster.topology();
      const owner = view.find((n) => n.role === 'master' && !n.failed && n.slots.some((range) => {
        const [from, to] = range.split('-').map(Number);
        return slot >= from! && slot <= (to ?? from!);
      }));
      const server = nodes.find((n) => n.port === owner?.port);
      if (!server) throw new Error(`no master serves slot ${slot}`);
      return server;
    },
    async failover(port) {
      const view = await cluster.topology();
      const master = view.find((n) => n.port === port && n.role === 'master');
      if (!master) throw new Error(`127.0.0.1:${port} is not a master`);
      const replica = view.find((n) => n.role === 'replica' && n.masterId === master.id && !n.failed);
      if (!replica) throw new Error(`master 127.0.0.1:${port} has no healthy replica`);
      await ask(replica.port, (r) => r.cluster('FAILOVER'));
      await eventually(async () => {
        const info = await ask(replica.port, (r) => r.info('replication'));
        return info.includes('role:master');
      }, { what: `replica ${replica.port} to become master` });
      await cluster.waitHealthy();
      // Gossip spreads the new configuration node by node: wait until every node sees the change,
      // so that any later look at the topology (from whichever node) names the new master.
      await eventually(async () => {
        for (const node of await live()) {
          const view = parseNodes(await ask(node.port, (r) => r.cluster('NODES') as Promise<string>), nodes);
          const promoted = view.find((n) => n.port === replica.port);
          if (promoted?.role !== 'master' || promoted.slots.length === 0) return false;
        }
        return true;
      }, { what: `every node to see ${replica.port} as master` });
      return nodes.find((n) => n.port === replica.port)!;
    },
    async waitHealthy() {
      await eventually(async () => {
        const up = await live();
        for (const node of up) {
          const info = await ask(node.port, (r) => r.cluster('INFO') as Promise<string>);
          if (!info.includes('cluster_state:ok') || !info.includes('cluster_slots_ok:16384')) return false;
        }
        return up.length > 0;
      }, { what: 'cluster_state:ok on every node' });
    },
    async restart() {
      for (const node of nodes) await node.stop();
      await Promise.all(nodes.map((n) => n.start()));
      await cluster.waitHealthy();
    },
    async destroy() {
      await Promise.all(nodes.map((n) => n.destroy()));
    },
  };
  await cluster.waitHealthy();
  return cluster;
}
