// The chaos suite's schedule: which fault happens when, drawn from one seed so a failing run can
// be replayed exactly (CHAOS_SEED=<seed>). Every kind appears at least once.
import { mulberry32 } from '../helpers/corpus.ts';

export const FAULT_KINDS = [
  'kill-producer', 'kill-worker', 'restart-redis', 'restart-dovecot', 'uidvalidity-change', 'cut-sink', 'plant-poison',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface PlannedFault { kind: FaultKind; atMs: number }

export interface FaultPlanOptions {
  seed: number;
  /** How long the run feeds mail; faults fall inside it. */
  spanMs: number;
  /** Faults beyond one of each kind. */
  extra: number;
}

export function planFaults({ seed, spanMs, extra }: FaultPlanOptions): PlannedFault[] {
  const random = mulberry32(seed);
  const kinds: FaultKind[] = [...FAULT_KINDS];
  for (let i = 0; i < extra; i++) kinds.push(FAULT_KINDS[Math.floor(random() * FAULT_KINDS.length)]!);
  // Spread over the span with jitter, in a shuffled order, never two at the same moment.
  for (let i = kinds.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [kinds[i], kinds[j]] = [kinds[j]!, kinds[i]!];
  }
  const slot = spanMs / kinds.length;
  return kinds.map((kind, i) => ({ kind, atMs: Math.round(i * slot + random() * slot * 0.8) }));
}
