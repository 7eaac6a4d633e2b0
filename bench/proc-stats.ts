// Memory of a child process from /proc: the current resident set and its high-water mark.
import { readFileSync } from 'node:fs';

export interface MemorySample { rssMb: number; peakRssMb: number }

export function memoryOf(pid: number): MemorySample | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
    return { rssMb: kb('VmRSS') / 1024, peakRssMb: kb('VmHWM') / 1024 };
  } catch {
    return undefined;
  }
}

/** Samples a process's RSS every `intervalMs`; `stop()` returns the largest seen and the kernel's peak. */
export function watchMemory(pid: number, intervalMs = 100): { stop(): MemorySample } {
  let largest = 0;
  let peak = 0;
  const sample = () => {
    const m = memoryOf(pid);
    if (!m) return;
    largest = Math.max(largest, m.rssMb);
    peak = Math.max(peak, m.peakRssMb);
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  return { stop() { sample(); clearInterval(timer); return { rssMb: largest, peakRssMb: peak }; } };
}
