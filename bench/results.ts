// One bench measurement, as written to bench/results/*.json: a value beside the baseline it is
// compared with (measured in the same run), the ratio, and whether the target was met. Targets are
// printed, never asserted: a missed target shows in the table and the JSON, it fails nothing.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface BenchResult {
  name: string;
  value: number;
  unit: string;
  baseline_name: string | null;
  baseline_value: number | null;
  /** value / baseline_value. */
  ratio: number | null;
  /** What counts as good, e.g. ">= 0.7x ioredis loop" or "< 150 MB". */
  target: string | null;
  /** null when there is no target. */
  met: boolean | null;
}

export type Target =
  | { kind: 'ratio-at-least'; ratio: number }
  | { kind: 'at-most'; value: number }
  | { kind: 'below'; value: number };

export interface MeasureInput {
  name: string;
  value: number;
  unit: string;
  baseline?: { name: string; value: number };
  target?: Target;
}

const round = (n: number) => (Number.isFinite(n) ? Math.round(n * 1000) / 1000 : n);

export function measure(input: MeasureInput): BenchResult {
  const baseline = input.baseline;
  const ratio = baseline && baseline.value > 0 ? input.value / baseline.value : null;
  let target: string | null = null;
  let met: boolean | null = null;
  switch (input.target?.kind) {
    case 'ratio-at-least':
      target = `>= ${input.target.ratio}x ${baseline?.name ?? 'baseline'}`;
      met = ratio !== null && ratio >= input.target.ratio;
      break;
    case 'at-most':
      target = `<= ${input.target.value} ${input.unit}`;
      met = input.value <= input.target.value;
      break;
    case 'below':
      target = `< ${input.target.value} ${input.unit}`;
      met = input.value < input.target.value;
      break;
    default:
      break;
  }
  return {
    name: input.name,
    value: round(input.value),
    unit: input.unit,
    baseline_name: baseline?.name ?? null,
    baseline_value: baseline ? round(baseline.value) : null,
    ratio: ratio === null ? null : round(ratio),
    target,
    met,
  };
}

export function formatTable(results: readonly BenchResult[]): string {
  const rows = results.map((r) => [
    r.name,
    `${r.value} ${r.unit}`,
    r.baseline_name ? `${r.baseline_value} (${r.baseline_name})` : '',
    r.ratio === null ? '' : `${r.ratio}x`,
    r.target ?? '',
    r.met === null ? '' : r.met ? 'met' : 'MISSED',
  ]);
  const header = ['name', 'value', 'baseline', 'ratio', 'target', ''];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line), ''].join('\n');
}

/** Writes `<timestamp>.json` and `latest.json`; returns the timestamped path. */
export function writeResults(dir: string, results: readonly BenchResult[], now = new Date()): string {
  mkdirSync(dir, { recursive: true });
  const json = `${JSON.stringify(results, null, 2)}\n`;
  const path = join(dir, `${now.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(path, json);
  writeFileSync(join(dir, 'latest.json'), json);
  return path;
}
