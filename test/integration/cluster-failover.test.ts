// mailstream on a local Redis Cluster (3 masters, 3 replicas): a producer and a worker given
// REDIS_CLUSTER_NODES ingest 3 accounts whose streams live on different masters, while the master
// of one account is failed over to its replica mid-ingestion. Every message ends up in its stream
// exactly once and in the sink; the scripts never cross a slot (Redis would refuse with CROSSSLOT).
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cluster } from 'ioredis';
import { accountKeys } from '../../src/core/keys.ts';
import type { EmailEntry } from '../../src/core/entry.ts';
import { startDaemon, type Daemon } from '../helpers/cli.ts';
import { generateCorpus } from '../helpers/corpus.ts';
import { startDovecot, type Dovecot } from '../helpers/dovecot.ts';
import { eventually } from '../helpers/ports.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { uniquePrefix } from '../helpers/producer-env.ts';
import { startRedisCluster, type RedisCluster } from '../helpers/redis-cluster.ts';

const PER_ACCOUNT = 400;
let dovecot: Dovecot;
let cluster: RedisCluster;
let client: Cluster;
const dir = mkdtempSync(join(tmpdir(), 'ms-cluster-'));
const sinkFile = join(dir, 'out.jsonl');
const prefix = uniquePrefix('cluster');
let accounts: string[] = [];

beforeAll(async () => {
  cluster = await startRedisCluster();
  client = cluster.client();
  // One account per master, so the failover hits one account's slot and spares the others.
  const byMaster = new Map<number, string>();
  for (let i = 0; byMaster.size < 3 && i < 200; i++) {
    const account = `user${i}@example.com`;
    const master = await cluster.masterOf(accountKeys(prefix, account).stream);
    if (!byMaster.has(master.port)) byMaster.set(master.port, account);
  }
  accounts = [...byMaster.values()];
  expect(accounts).toHaveLength(3);
  dovecot = await startDovecot({ users: accounts.map((user) => ({ user, password: `pw-${user}` })) });
});

afterAll(async () => {
  client?.disconnect();
  await dovecot?.destroy();
  await cluster?.destroy();
  expect(await killAllTracked()).toBe(0);
});

function sinkKeys(): string[] {
  if (!existsSync(sinkFile)) return [];
  return readFileSync(sinkFile, 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as EmailEntry).key);
}

async function streamEntries(account: string): Promise<EmailEntry[]> {
  return (await client.xrange(accountKeys(prefix, account).stream, '-', '+')).map(([, f]) => JSON.parse(f[3]!) as EmailEntry);
}

describe('Redis Cluster', () => {
  it('a master fails over during ingestion: nothing lost, nothing appended twice, everything delivered', async () => {
    for (const [i, user] of accounts.entries()) {
      dovecot.seed(user, 'INBOX', generateCorpus(PER_ACCOUNT, { seed: 300 + i, tag: user }).map((m) => m.raw));
    }
    const accountsFile = join(dir, 'accounts.json');
    writeFileSync(accountsFile, JSON.stringify({
      defaults: { host: '127.0.0.1', port: dovecot.tlsPort, secure: true, tlsCaFile: dovecot.caFile, auth: 'password' },
      accounts: accounts.map((user, i) => ({ user, password: { env: `PASSWORD_${i}` } })),
    }));
    const env = {
      REDIS_URL: `redis://${cluster.seeds[0]}`,
      REDIS_CLUSTER_NODES: cluster.seeds.join(','),
      MAILSTREAM_PREFIX: prefix,
      ACCOUNTS_FILE: accountsFile,
      ...Object.fromEntries(accounts.map((user, i) => [`PASSWORD_${i}`, `pw-${user}`])),
      HTTP_PORT: '0',
      START_FROM: 'all',
      FETCH_BATCH_SIZE: '10',
      PARSE_THREADS: '1',
      RECONNECT_BASE_MS: '100',
      RECONNECT_MAX_MS: '1000',
    };
    const producer: Daemon = startDaemon(['producer'], env);
    const worker: Daemon = startDaemon(['worker'], { ...env, SINK_URL: pathToFileURL(sinkFile).href, READ_BLOCK_MS: '500', CLAIM_IDLE_MS: '2000', CLAIM_INTERVAL_MS: '1000' });

    // Fail over the master of the first account while its mailbox is being ingested.
    const target = accounts[0]!;
    const stream = accountKeys(prefix, target).stream;
    await eventually(async () => (await client.xlen(stream)) >= 50, { what: 'ingestion under way' });
    const oldMaster = await cluster.masterOf(stream);
    const appendedBefore = await client.xlen(stream);
    const newMaster = await cluster.failover(oldMaster.port);
    expect((await cluster.masterOf(stream)).port).toBe(newMaster.port);
    expect(appendedBefore).toBeLessThan(PER_ACCOUNT);

    for (const user of accounts) {
      await eventually(async () => (await client.xlen(accountKeys(prefix, user).stream)) >= PER_ACCOUNT, { what: `${PER_ACCOUNT} entries of ${user}` });
    }
    const all: EmailEntry[] = [];
    for (const user of accounts) {
      const entries = await streamEntries(user);
      expect(entries.map((e) => e.uid), user).toEqual(Array.from({ length: PER_ACCOUNT }, (_, i) => i + 1));
      expect(new Set(entries.map((e) => e.key)).size).toBe(PER_ACCOUNT);
      all.push(...entries);
    }
    await eventually(() => new Set(sinkKeys()).size >= all.length, { what: 'every email delivered to the sink' });
    expect(new Set(sinkKeys())).toEqual(new Set(all.map((e) => e.key)));

    for (const daemon of [producer, worker]) {
      expect(daemon.logs().some((l) => /CROSSSLOT/.test(JSON.stringify(l)))).toBe(false);
      expect(await daemon.stop('SIGTERM')).toBe(0);
    }
  });
});
