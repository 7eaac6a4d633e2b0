// A private redis-server on a free loopback port with its own data dir, so the demo, the load
// test, the bench and the tests can stop, kill and restart it (with AOF, the data comes back)
// without touching the machine's Redis.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { killTree, spawnChild, stopChild, type ChildHandle, type ServiceControl, type SpawnFn } from './child-process.ts';
import { freePort, waitForPort } from './ports.ts';

export interface LocalRedisOptions {
  /** Append-only file with fsync on every write, so a restart finds everything. */
  aof?: boolean;
  extraArgs?: string[];
  /** How the server process is started (the tests pass one that tracks it). */
  spawn?: SpawnFn;
  /** Picks the port (a cluster node needs one with its bus port, 10,000 higher, free too). @default freePort */
  choosePort?: () => Promise<number>;
}

export interface LocalRedis extends ServiceControl {
  port: number;
  url: string;
  dir: string;
  /** A fresh client (the caller closes it). */
  client(): Redis;
  /** The running server process, if any. */
  process(): ChildHandle | undefined;
}

export async function startLocalRedis(options: LocalRedisOptions = {}): Promise<LocalRedis> {
  const spawn = options.spawn ?? spawnChild;
  const port = await (options.choosePort ?? freePort)();
  const dir = mkdtempSync(join(tmpdir(), 'ms-redis-'));
  let proc: ChildHandle | undefined;
  const args = () => [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '',
    '--appendonly', options.aof ? 'yes' : 'no', '--appendfsync', 'always',
    '--maxmemory-policy', 'noeviction', '--logfile', join(dir, 'redis.log'), '--daemonize', 'no',
    ...(options.extraArgs ?? []),
  ];
  const server: LocalRedis = {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    client: () => new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 3, lazyConnect: false }),
    process: () => proc,
    async start() {
      proc = spawn('redis-server', args());
      await waitForPort(port);
      // Loading a large AOF answers LOADING for a while; wait until commands work.
      const probe = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 50, retryStrategy: () => 50 });
      try {
        for (let i = 0; i < 200; i++) {
          try { await probe.ping(); break; } catch { await new Promise((r) => setTimeout(r, 50)); }
        }
      } finally {
        probe.disconnect();
      }
    },
    async stop() { if (proc) await stopChild(proc, 'SIGTERM'); proc = undefined; },
    async kill() { if (proc) await killTree(proc); proc = undefined; },
    async restart() { await server.stop(); await server.start(); },
    async destroy() { await server.kill(); rmSync(dir, { recursive: true, force: true }); },
  };
  await server.start();
  return server;
}
