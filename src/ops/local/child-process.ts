// Child processes that the local services, the demo and the load test start. A launcher takes a
// `SpawnFn`, so a caller that keeps its own register of children (the test helpers) can pass
// one that records them; everything else uses `spawnChild`.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

export interface ChildHandle {
  child: ChildProcess;
  /** Resolves with the exit code (or the signal name) when the process ends. */
  exited: Promise<number | string>;
  output(): string;
}

/** What every local service offers: stopped, killed and started again on the same port and data. */
export interface ServiceControl {
  stop(): Promise<void>;
  kill(): Promise<void>;
  start(): Promise<void>;
  restart(): Promise<void>;
  /** Stops the service and removes its data dir. */
  destroy(): Promise<void>;
}

export type SpawnOptionsWithOutput = SpawnOptions & { keepOutput?: boolean };

export type SpawnFn = (command: string, args: string[], options?: SpawnOptionsWithOutput) => ChildHandle;

export function spawnChild(command: string, args: string[], options: SpawnOptionsWithOutput = {}): ChildHandle {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  let buffer = '';
  const keep = options.keepOutput ?? true;
  child.stdout?.on('data', (d: Buffer) => { if (keep) buffer += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { if (keep) buffer += d.toString(); });
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? -1));
    child.once('error', () => resolve(-1));
  });
  return { child, exited, output: () => buffer };
}

export function isRunning(handle: ChildHandle): boolean {
  return handle.child.exitCode === null && handle.child.signalCode === null && handle.child.pid !== undefined;
}

/** Sends `signal`, then SIGKILL after `graceMs`; resolves with how the process ended. */
export async function stopChild(handle: ChildHandle, signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<number | string> {
  if (handle.child.exitCode !== null || handle.child.signalCode !== null) return handle.exited;
  handle.child.kill(signal);
  const timer = setTimeout(() => handle.child.kill('SIGKILL'), graceMs);
  const result = await handle.exited;
  clearTimeout(timer);
  return result;
}

/** Pids of every process below `pid` (a daemon's forked children), read from /proc. */
export function descendants(pid: number): number[] {
  const parents = new Map<number, number[]>();
  for (const entry of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parents.set(ppid, [...(parents.get(ppid) ?? []), Number(entry)]);
    } catch { /* exited meanwhile */ }
  }
  const out: number[] = [];
  const walk = (p: number) => { for (const c of parents.get(p) ?? []) { out.push(c); walk(c); } };
  walk(pid);
  return out;
}

/** A SIGKILLed master leaves its forked children running; end those (and only those) too. */
export async function killTree(handle: ChildHandle): Promise<void> {
  const children = handle.child.pid ? descendants(handle.child.pid) : [];
  await stopChild(handle, 'SIGKILL');
  for (const pid of children) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
}
