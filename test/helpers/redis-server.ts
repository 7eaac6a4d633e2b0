// A private redis-server on a free loopback port, with its own data dir, so tests can stop,
// kill and restart it (with AOF, the data comes back) without touching the machine's Redis.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, waitForPort } from './ports.ts';
import { spawnTracked, stopProcess, type Tracked } from './processes.ts';

export interface RedisServerOptions {
  /** Append-only file with fsync on every write, so a restart finds everything. */
  aof?: boolean;
  extraArgs?: string[];
}

export interface RedisServer {
  port: number;
  url: string;
  dir: string;
  /** A fresh client (the caller closes it). */
  client(): Redis;
  stop(): Promise<void>;
  kill(): Promise<void>;
  start(): Promise<void>;
  restart(): Promise<void>;
  /** Stops the server and removes its data dir. */
  destroy(): Promise<void>;
}

export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'ms-redis-'));
  let proc: Tracked | undefined;
  const args = () => [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '',
    '--appendonly', options.aof ? 'yes' : 'no', '--appendfsync', 'always',
    '--maxmemory-policy', 'noeviction', '--logfile', join(dir, 'redis.log'), '--daemonize', 'no',
    ...(options.extraArgs ?? []),
  ];
  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    client: () => new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 3, lazyConnect: false }),
    async start() {
      proc = spawnTracked('redis-server', args());
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
    async stop() { if (proc) await stopProcess(proc, 'SIGTERM'); proc = undefined; },
    async kill() { if (proc) await stopProcess(proc, 'SIGKILL'); proc = undefined; },
    async restart() { await server.stop(); await server.start(); },
    async destroy() { await server.kill(); rmSync(dir, { recursive: true, force: true }); },
  };
  await server.start();
  return server;
}
