// Backup and restore on a Redis Cluster: keys of several accounts live on different masters; the
// export walks every master and the restore puts each account back on its slot, with the same
// IDs, group positions and pending entries. The RDB copy is skipped with the reason.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';
import { captureState, fillState } from '../helpers/ops-state.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { startRedisCluster, type RedisCluster } from '../helpers/redis-cluster.ts';

const PREFIX = 'mscl';
const ACCOUNTS = ['alice@example.com', 'bob@example.org', 'carol@example.net'];
let cluster: RedisCluster;
let redis: Cluster;
let dir: string;

beforeAll(async () => {
  cluster = await startRedisCluster({ masters: 3, replicas: 0 });
  redis = cluster.client();
  dir = mkdtempSync(join(tmpdir(), 'ms-backup-cluster-'));
});

afterAll(async () => {
  redis?.disconnect();
  await cluster?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
  expect(await killAllTracked()).toBe(0);
});

describe('backup / restore on Redis Cluster', () => {
  it('round-trips accounts spread over the masters', async () => {
    for (const account of ACCOUNTS) await fillState(redis, PREFIX, account);
    const masters = new Set(await Promise.all(ACCOUNTS.map(async (a) => (await cluster.masterOf(`${PREFIX}:{${a}}:emails`)).port)));
    expect(masters.size).toBeGreaterThan(1);
    const before = await Promise.all(ACCOUNTS.map((a) => captureState(redis, PREFIX, a)));
    const env = { REDIS_URL: `redis://${cluster.seeds[0]}`, REDIS_CLUSTER_NODES: cluster.seeds.join(','), MAILSTREAM_PREFIX: PREFIX };

    const backup = await runCli(['backup', '--out', dir], env);
    expect(backup.stderr).toBe('');
    expect(backup.code).toBe(0);
    expect(backup.stdout).toMatch(/RDB snapshot: not copied: Redis Cluster/);
    const file = join(dir, readdirSync(dir).find((f) => f.endsWith('.jsonl.gz'))!);

    await Promise.all(redis.nodes('master').map((node) => node.flushall()));
    const restore = await runCli(['restore', file], env);
    expect(restore.stderr).toBe('');
    expect(restore.code).toBe(0);
    expect(await Promise.all(ACCOUNTS.map((a) => captureState(redis, PREFIX, a)))).toEqual(before);
  });
});
