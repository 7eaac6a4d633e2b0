// Turns the scale section's figures into one SVG image: the producer's RSS and its time to get
// every mailbox into IDLE against the number of mailboxes, and the worker's Redis connections
// against the number of accounts (log scale across, targets dashed).
//   node bench/plot-scale.ts [results.json] [out.svg] [--markdown]
// Defaults: bench/results/latest.json and runbooks/img/scaling-curve.svg. `--markdown` also
// prints the figures as a Markdown table (for runbooks/scaling.md).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { BenchResult } from './results.ts';

export interface Point { x: number; y: number }

export interface Panel {
  title: string;
  xLabel: string;
  yLabel: string;
  points: Point[];
  /** A dashed reference drawn under the measured line. */
  target?: { label: string; points: Point[] };
}

const PANEL_W = 320;
const PANEL_H = 260;
const MARGIN = { left: 64, right: 36, top: 36, bottom: 44 };

/** Figures named like `producer_rss_100_idle_mailboxes`, as points ordered by their count. */
export function series(results: readonly BenchResult[], pattern: RegExp): Point[] {
  return results.flatMap((r) => {
    const count = pattern.exec(r.name)?.[1];
    return count === undefined || !Number.isFinite(r.value) ? [] : [{ x: Number(count), y: r.value }];
  }).sort((a, b) => a.x - b.x);
}

/** 1, 2, 5 times a power of ten: the smallest such number at or above `value`. */
export function niceCeiling(value: number): number {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * power).find((v) => v >= value)!;
}

const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const fmt = (n: number) => (Number.isInteger(n) || Math.abs(n) >= 100 ? String(Math.round(n)) : n.toFixed(1));

function drawPanel(panel: Panel, offsetX: number): string {
  const all = [...panel.points, ...(panel.target?.points ?? [])];
  const minX = 10 ** Math.floor(Math.log10(Math.min(...all.map((p) => p.x))));
  const maxX = 10 ** Math.ceil(Math.log10(Math.max(...all.map((p) => p.x))));
  const maxY = niceCeiling(Math.max(...all.map((p) => p.y)) * 1.1);
  const w = PANEL_W - MARGIN.left - MARGIN.right;
  const h = PANEL_H - MARGIN.top - MARGIN.bottom;
  const sx = (x: number) => offsetX + MARGIN.left + (maxX === minX ? 0 : (Math.log10(x) - Math.log10(minX)) / (Math.log10(maxX) - Math.log10(minX)) * w);
  const sy = (y: number) => MARGIN.top + h - (y / maxY) * h;
  const out: string[] = [];
  out.push(`<text x="${offsetX + PANEL_W / 2}" y="18" text-anchor="middle" font-weight="bold">${escape(panel.title)}</text>`);
  out.push(`<rect x="${offsetX + MARGIN.left}" y="${MARGIN.top}" width="${w}" height="${h}" fill="none" stroke="#999"/>`);
  for (let x = minX; x <= maxX; x *= 10) {
    out.push(`<line x1="${sx(x)}" y1="${MARGIN.top}" x2="${sx(x)}" y2="${MARGIN.top + h}" stroke="#eee"/>`);
    out.push(`<text x="${sx(x)}" y="${MARGIN.top + h + 16}" text-anchor="middle">${x}</text>`);
  }
  for (let i = 0; i <= 5; i++) {
    const y = (maxY / 5) * i;
    out.push(`<line x1="${offsetX + MARGIN.left}" y1="${sy(y)}" x2="${offsetX + MARGIN.left + w}" y2="${sy(y)}" stroke="#eee"/>`);
    out.push(`<text x="${offsetX + MARGIN.left - 6}" y="${sy(y) + 4}" text-anchor="end">${fmt(y)}</text>`);
  }
  out.push(`<text x="${offsetX + MARGIN.left + w / 2}" y="${PANEL_H - 8}" text-anchor="middle">${escape(panel.xLabel)}</text>`);
  out.push(`<text transform="translate(${offsetX + 14} ${MARGIN.top + h / 2}) rotate(-90)" text-anchor="middle">${escape(panel.yLabel)}</text>`);
  const path = (points: Point[]) => points.map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ');
  if (panel.target && panel.target.points.length > 0) {
    out.push(`<polyline points="${path(panel.target.points)}" fill="none" stroke="#c33" stroke-dasharray="5 4"/>`);
    const end = panel.target.points[panel.target.points.length - 1]!;
    out.push(`<text x="${sx(end.x) - 4}" y="${sy(end.y) - 6}" text-anchor="end" fill="#c33">${escape(panel.target.label)}</text>`);
  }
  out.push(`<polyline points="${path(panel.points)}" fill="none" stroke="#2563eb" stroke-width="2"/>`);
  for (const [i, p] of panel.points.entries()) {
    // The last label goes left of its point, the others right, and above it near the axis, so
    // none leaves the panel or sits on a tick.
    const last = i === panel.points.length - 1 && i > 0;
    out.push(`<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="3.5" fill="#2563eb"/>`);
    const below = sy(p.y) + 14 < MARGIN.top + h - 4;
    out.push(`<text x="${(sx(p.x) + (last ? -6 : 6)).toFixed(1)}" y="${(sy(p.y) + (below ? 14 : -8)).toFixed(1)}" text-anchor="${last ? 'end' : 'start'}" fill="#2563eb">${fmt(p.y)}</text>`);
  }
  return out.join('\n');
}

export function scalingPanels(results: readonly BenchResult[]): Panel[] {
  const rss = series(results, /^producer_rss_(\d+)_idle_mailboxes$/);
  const toIdle = series(results, /^producer_time_to_idle_(\d+)_mailboxes$/);
  const connections = series(results, /^worker_redis_connections_(\d+)_accounts?$/);
  if (rss.length === 0 || toIdle.length === 0 || connections.length === 0) {
    throw new Error('no scale figures in these results: run `node bench/run.ts --only scale` first');
  }
  // The target is marginal, from the second largest count to the largest.
  const from = rss[Math.max(0, rss.length - 2)]!;
  const last = rss[rss.length - 1]!;
  return [
    { title: 'Producer memory, idle mailboxes', xLabel: 'mailboxes (one per account)', yLabel: 'RSS (MB)', points: rss,
      target: { label: 'target: +1 MB per mailbox', points: [from, { x: last.x, y: from.y + (last.x - from.x) }] } },
    { title: 'Producer start to all in IDLE', xLabel: 'mailboxes (one per account)', yLabel: 'seconds', points: toIdle },
    { title: 'Worker Redis connections', xLabel: 'accounts', yLabel: 'connections', points: connections,
      target: { label: 'target: at most 4', points: [{ x: connections[0]!.x, y: 4 }, { x: connections[connections.length - 1]!.x, y: 4 }] } },
  ];
}

export function renderSvg(panels: readonly Panel[], caption: string): string {
  const width = PANEL_W * panels.length;
  const height = PANEL_H + 24;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    ...panels.map((panel, i) => drawPanel(panel, i * PANEL_W)),
    `<text x="8" y="${height - 6}" fill="#555">${escape(caption)}</text>`,
    '</svg>',
    '',
  ].join('\n');
}

const fmtValue = (r: BenchResult) => `${Number.isInteger(r.value) ? r.value.toLocaleString('en') : r.value.toFixed(Math.abs(r.value) < 1 ? 3 : 1)} ${r.unit}`;

export function markdownTable(results: readonly BenchResult[]): string {
  const rows = results.map((r) => `| \`${r.name}\` | ${fmtValue(r)} | ${r.target ?? ''} | ${r.met === null ? '' : r.met ? 'met' : '**missed**'} |`);
  return ['| figure | value | target | |', '| --- | --- | --- | --- |', ...rows, ''].join('\n');
}

function main(): void {
  const { positionals, values } = parseArgs({ allowPositionals: true, options: { markdown: { type: 'boolean' } } });
  const input = positionals[0] ?? fileURLToPath(new URL('./results/latest.json', import.meta.url));
  const output = positionals[1] ?? fileURLToPath(new URL('../runbooks/img/scaling-curve.svg', import.meta.url));
  const results = JSON.parse(readFileSync(input, 'utf8')) as BenchResult[];
  const caption = `From one run of \`node bench/run.ts --only scale\` (${input.split('/').pop()}).`;
  mkdirSync(dirname(output), { recursive: true });
  writeFileSync(output, renderSvg(scalingPanels(results), caption));
  process.stdout.write(`written: ${output}\n`);
  if (values.markdown) process.stdout.write(`\n${markdownTable(results)}`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main();
