// A whole mailstream installation on loopback: a private Redis and Dovecot with one password
// account, and the `mailstream producer` / `worker` daemons run as child processes against them,
// the way an operator runs them. The demo, the load test, the bench and the chaos suite build on it.
import { openSync, closeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MailstreamError } from '../../core/errors.ts';
import { isRunning, spawnChild, stopChild, type ChildHandle, type SpawnFn } from './child-process.ts';
import { startDovecot, type Dovecot } from './local-dovecot.ts';
import { startLocalRedis, type LocalRedis } from './local-redis.ts';
import { freePort } from './ports.ts';

export const MAILSTREAM_BIN = fileURLToPath(new URL('../../../bin/mailstream.js', import.meta.url));
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/**
 * Node flags the daemons run with, here and in the systemd units (a test holds them equal). On a
 * big host V8 sizes its heap for the host, not for the ~25 MB a daemon keeps alive: measured here,
 * a worker draining 4 KB entries sat at ~270 MB RSS by default and ~140 MB with these. A smaller
 * young generation (4 MB) saved little more memory and cost a quarter of the throughput in
 * scavenges. The cap leaves ample room: an email in the stream is capped well below 1 MB.
 */
export const DAEMON_NODE_FLAGS = ['--max-semi-space-size=8', '--max-old-space-size=512'] as const;

export const LOCAL_USER = 'demo@mailstream.local';
const LOCAL_PASSWORD = 'demo-password';

export interface LocalStackOptions {
  /** Redis with AOF (fsync always), for runs that restart it. */
  aof?: boolean;
  /** An existing Redis to use instead of a private one. */
  redisUrl?: string;
  spawn?: SpawnFn;
}

export interface LocalStack {
  redis: LocalRedis | undefined;
  redisUrl: string;
  dovecot: Dovecot;
  user: string;
  /** Settings a producer needs to read this Dovecot over TLS with a password (and Redis). */
  producerEnv(extra?: Record<string, string>): Record<string, string>;
  /** Settings a worker needs (the sink comes from the caller). */
  workerEnv(sinkUrl: string, extra?: Record<string, string>): Record<string, string>;
  stop(): Promise<void>;
}

export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const redis = options.redisUrl ? undefined : await startLocalRedis({ aof: options.aof, spawn: options.spawn });
  let dovecot: Dovecot;
  try {
    dovecot = await startDovecot({ users: [{ user: LOCAL_USER, password: LOCAL_PASSWORD }], spawn: options.spawn });
  } catch (err) {
    await redis?.destroy();
    throw err;
  }
  const redisUrl = options.redisUrl ?? redis!.url;
  const common = { REDIS_URL: redisUrl, IMAP_USER: LOCAL_USER };
  return {
    redis,
    redisUrl,
    dovecot,
    user: LOCAL_USER,
    producerEnv: (extra = {}) => ({
      ...common,
      IMAP_HOST: '127.0.0.1',
      IMAP_PORT: String(dovecot.tlsPort),
      IMAP_SECURE: 'true',
      IMAP_TLS_CA_FILE: dovecot.caFile,
      IMAP_AUTH: 'password',
      IMAP_PASSWORD: LOCAL_PASSWORD,
      START_FROM: 'all',
      ...extra,
    }),
    workerEnv: (sinkUrl, extra = {}) => ({ ...common, SINK_URL: sinkUrl, ...extra }),
    async stop() {
      await dovecot.destroy();
      await redis?.destroy();
    },
  };
}

export interface DaemonProcess {
  role: 'producer' | 'worker';
  handle: ChildHandle;
  /** http://127.0.0.1:<port> of its /health /ready /status /metrics. */
  httpUrl: string;
  logFile: string | undefined;
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

/** A daemon that ended on its own is a failed run: say which, and where its log is. */
export function assertAlive(daemons: readonly DaemonProcess[]): void {
  for (const daemon of daemons) {
    if (isRunning(daemon.handle)) continue;
    const where = daemon.logFile ? `see ${daemon.logFile}` : `its output:\n${daemon.handle.output().slice(-2000)}`;
    throw new MailstreamError('ERR_LOCAL_DAEMON', `mailstream ${daemon.role} (pid ${daemon.handle.child.pid}) stopped unexpectedly; ${where}`);
  }
}

export interface SpawnDaemonOptions {
  /** Settings of the child; nothing else from this process's environment reaches it but PATH and HOME. */
  env: Record<string, string>;
  /** Append the daemon's JSON log here instead of keeping it in memory. */
  logFile?: string;
  spawn?: SpawnFn;
  /** Its own process group, so a Ctrl-C at the terminal reaches only the parent, which stops it in order. */
  detached?: boolean;
}

/** Waits until the daemon's /ready answers 200 (its Redis, IMAP or sink answer). */
export async function waitUntilReady(daemon: DaemonProcess, attempts = 1200): Promise<void> {
  for (let i = 0; i < attempts; i++) {
    assertAlive([daemon]);
    if (await fetch(`${daemon.httpUrl}/ready`).then((r) => r.ok, () => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new MailstreamError('ERR_LOCAL_DAEMON', `mailstream ${daemon.role} did not become ready; ${daemon.logFile ? `see ${daemon.logFile}` : 'no log kept'}`);
}

/** Runs `mailstream <role>` as a child process with its HTTP listener on a free port. */
export async function spawnDaemon(role: 'producer' | 'worker', options: SpawnDaemonOptions): Promise<DaemonProcess> {
  const spawn = options.spawn ?? spawnChild;
  const port = options.env.HTTP_PORT ?? String(await freePort());
  // The producer with two malloc arenas, as its systemd unit, not one per allocating thread.
  const arenas = role === 'producer' ? { MALLOC_ARENA_MAX: '2' } : {};
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/', LOG_LEVEL: 'info', ...arenas, ...options.env, HTTP_PORT: port };
  const fd = options.logFile ? openSync(options.logFile, 'a') : undefined;
  const stdio: ['ignore', 'pipe' | number, 'pipe' | number] = fd === undefined ? ['ignore', 'pipe', 'pipe'] : ['ignore', fd, fd];
  let handle: ChildHandle;
  try {
    // An empty env file: an operator's .env (real accounts, another Redis) must not reach a local run.
    handle = spawn(process.execPath, [...DAEMON_NODE_FLAGS, '--', MAILSTREAM_BIN, '--env-file', '/dev/null', role], { env, cwd: REPO_ROOT, stdio, detached: options.detached ?? false });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  return {
    role,
    handle,
    httpUrl: `http://127.0.0.1:${port}`,
    logFile: options.logFile,
    stop: (signal = 'SIGTERM') => stopChild(handle, signal, 30_000),
  };
}
