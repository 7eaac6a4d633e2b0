// Child processes the tests start. Every helper spawns through here, so a suite can stop all it
// started (and only that) and fail if anything is left running.
import type { ChildProcess } from 'node:child_process';
import { spawnChild, stopChild, type ChildHandle, type SpawnOptionsWithOutput } from '../../src/ops/local/child-process.ts';

const live = new Set<ChildProcess>();

export type Tracked = ChildHandle;

export function spawnTracked(command: string, args: string[], options: SpawnOptionsWithOutput = {}): Tracked {
  const handle = spawnChild(command, args, options);
  live.add(handle.child);
  handle.child.once('exit', () => live.delete(handle.child));
  handle.child.once('error', () => live.delete(handle.child));
  return handle;
}

export const stopProcess = stopChild;

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
