// What the scale section reads about the daemons from outside, as an operator could: CPU time
// from /proc/<pid>/stat, the Redis connections a process holds (its sockets matched against
// CLIENT LIST), Redis used_memory, and each producer's mailboxes from its /status endpoint.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { Redis } from 'ioredis';
import type { DaemonProcess } from '../src/ops/local/stack.ts';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let ticksPerSecond: number | undefined;

/** A /proc stat line's name and its CPU seconds, user and system apart. */
function statCpu(path: string): { name: string; user: number; system: number } {
  ticksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  const stat = readFileSync(path, 'utf8');
  // The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
  return { name: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), user: Number(fields[11]) / ticksPerSecond, system: Number(fields[12]) / ticksPerSecond };
}

/** CPU seconds (user + system, every thread) the process has used so far. */
export function cpuSeconds(pid: number): number {
  const { user, system } = statCpu(`/proc/${pid}/stat`);
  return user + system;
}

/** CPU seconds of each thread of a process, by thread name (`node`, `libuv-worker`, `V8 DefaultWorke`, ...), user and system apart. */
export function threadCpu(pid: number): Map<string, { user: number; system: number }> {
  const out = new Map<string, { user: number; system: number }>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const { name, user, system } = statCpu(`/proc/${pid}/task/${tid}/stat`);
      const was = out.get(name) ?? { user: 0, system: 0 };
      out.set(name, { user: was.user + user, system: was.system + system });
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

/** Share of one core a process used over `seconds`, measured while the caller waits. */
export async function cpuShare(pids: readonly number[], seconds: number): Promise<number[]> {
  const before = pids.map(cpuSeconds);
  const started = performance.now();
  await sleep(seconds * 1000);
  const elapsed = (performance.now() - started) / 1000;
  return pids.map((pid, i) => (cpuSeconds(pid) - before[i]!) / elapsed);
}

/** Local TCP ports of the process's sockets connected to `remotePort` on loopback. */
function localPortsTo(pid: number, remotePort: number): Set<number> {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (target.startsWith('socket:[')) inodes.add(target.slice(8, -1));
    } catch {
      // closed between the listing and the read
    }
  }
  const ports = new Set<number>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try { text = readFileSync(table, 'utf8'); } catch { continue; }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10 || !inodes.has(cols[9]!)) continue;
      const local = Number.parseInt(cols[1]!.split(':')[1]!, 16);
      const remote = Number.parseInt(cols[2]!.split(':')[1]!, 16);
      if (remote === remotePort) ports.add(local);
    }
  }
  return ports;
}

/** Connections Redis lists (CLIENT LIST) that come from this process. */
export async function redisConnectionsOf(pid: number, redis: Redis, redisPort: number): Promise<number> {
  const ports = localPortsTo(pid, redisPort);
  const list = await redis.client('LIST') as string;
  return list.split('\n').filter((line) => {
    const port = /\baddr=[^ ]*:(\d+)\b/.exec(line)?.[1];
    return port !== undefined && ports.has(Number(port));
  }).length;
}

export async function usedMemory(redis: Redis): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1]);
}

/** One mailbox as a producer's /status shows it. */
export interface HeldMailbox {
  account: string;
  mailbox: string;
  state: string;
  connected: boolean;
  token: string;
  reconnects: number;
}

/** The mailboxes a producer holds now (empty when it does not answer). */
export async function heldMailboxes(daemon: DaemonProcess): Promise<HeldMailbox[]> {
  try {
    const response = await fetch(`${daemon.httpUrl}/status`, { signal: AbortSignal.timeout(10_000) });
    if (!response.ok) return [];
    const status = await response.json() as { mailboxes?: HeldMailbox[] };
    return status.mailboxes ?? [];
  } catch {
    return [];
  }
}

export const mailboxId = (m: { account: string; mailbox: string }) => `${m.account}/${m.mailbox}`;

/**
 * Polls the producers' /status until `done` says so for what they hold (by producer, in order);
 * returns the seconds from `since`. A producer that exits fails the wait.
 */
export async function waitForMailboxes(
  producers: readonly DaemonProcess[],
  done: (held: HeldMailbox[][]) => boolean,
  options: { since: number; timeoutMs: number; what: string; intervalMs?: number },
): Promise<number> {
  const deadline = options.since + options.timeoutMs;
  for (;;) {
    for (const p of producers) {
      if (p.handle.child.exitCode !== null || p.handle.child.signalCode !== null) throw new Error(`producer ${p.handle.child.pid} exited while waiting for ${options.what}: ${p.handle.output().slice(-2000)}`);
    }
    const held = await Promise.all(producers.map(heldMailboxes));
    if (done(held)) return (Date.now() - options.since) / 1000;
    if (Date.now() > deadline) {
      const states = new Map<string, number>();
      for (const m of held.flat()) states.set(m.state, (states.get(m.state) ?? 0) + 1);
      throw new Error(`timed out after ${options.timeoutMs / 1000} s waiting for ${options.what}; states now: ${JSON.stringify(Object.fromEntries(states))}`);
    }
    await sleep(options.intervalMs ?? 250);
  }
}

/**
 * True once every one of `ids` has been seen in IDLE in one of the producers. Seen once is
 * enough: an idle mailbox re-checks itself every POLL_INTERVAL_MS (`syncing` for a moment), and
 * with a thousand of them some is nearly always mid-check.
 */
export function allIdle(ids: Iterable<string>): (held: HeldMailbox[][]) => boolean {
  const waiting = new Set(ids);
  return (held) => {
    for (const m of held.flat()) if (m.state === 'idle') waiting.delete(mailboxId(m));
    return waiting.size === 0;
  };
}
