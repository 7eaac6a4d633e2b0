// Child processes the tests start. Every helper spawns through here, so a suite can stop all it
// started (and only that) and fail if anything is left running.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

const live = new Set<ChildProcess>();

export interface Tracked {
  child: ChildProcess;
  /** Resolves with the exit code (or the signal name) when the process ends. */
  exited: Promise<number | string>;
  output(): string;
}

export function spawnTracked(command: string, args: string[], options: SpawnOptions & { keepOutput?: boolean } = {}): Tracked {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  live.add(child);
  let buffer = '';
  const keep = options.keepOutput ?? true;
  child.stdout?.on('data', (d: Buffer) => { if (keep) buffer += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { if (keep) buffer += d.toString(); });
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => { live.delete(child); resolve(code ?? signal ?? -1); });
    child.once('error', () => { live.delete(child); resolve(-1); });
  });
  return { child, exited, output: () => buffer };
}

export async function stopProcess(tracked: Tracked, signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<number | string> {
  if (tracked.child.exitCode !== null || tracked.child.signalCode !== null) return tracked.exited;
  tracked.child.kill(signal);
  const timer = setTimeout(() => tracked.child.kill('SIGKILL'), graceMs);
  const result = await tracked.exited;
  clearTimeout(timer);
  return result;
}

/** Kills everything the tests started and is still running; returns how many there were. */
export async function killAllTracked(): Promise<number> {
  const leftovers = [...live];
  await Promise.all(leftovers.map((child) => new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  })));
  return leftovers.length;
}

export function liveProcessCount(): number {
  return live.size;
}
