// `npm run bench --quick` end to end, for the shape of what it writes, never its numbers: the
// bench runs against real services, and speed is judged by people reading the table.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.ts';
import { killAllTracked, spawnTracked } from '../helpers/processes.ts';
import { formatTable, measure, writeResults } from '../../bench/results.ts';

const dir = mkdtempSync(join(tmpdir(), 'ms-bench-test-'));

afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  expect(await killAllTracked()).toBe(0);
});

describe('bench results', () => {
  it('computes ratio and target from the baseline measured in the same run', () => {
    expect(measure({ name: 'worker_x', value: 800, unit: 'emails/s', baseline: { name: 'loop', value: 1000 }, target: { kind: 'ratio-at-least', ratio: 0.7 } }))
      .toEqual({ name: 'worker_x', value: 800, unit: 'emails/s', baseline_name: 'loop', baseline_value: 1000, ratio: 0.8, target: '>= 0.7x loop', met: true });
    expect(measure({ name: 'latency_p95', value: 1.2, unit: 's', target: { kind: 'below', value: 1 } }))
      .toMatchObject({ baseline_name: null, baseline_value: null, ratio: null, target: '< 1 s', met: false });
    expect(measure({ name: 'worker_scaling', value: 5, unit: 'emails/s' })).toMatchObject({ target: null, met: null });
    expect(formatTable([measure({ name: 'latency_p95', value: 1.2, unit: 's', target: { kind: 'below', value: 1 } })])).toMatch(/latency_p95\s+1\.2 s\s+< 1 s\s+MISSED/);
  });

  it('writes a timestamped file and latest.json with the same content', () => {
    const out = join(dir, 'unit');
    const path = writeResults(out, [measure({ name: 'producer_x', value: 1, unit: 'x' })], new Date('2026-01-02T03:04:05.678Z'));
    expect(path).toBe(join(out, '2026-01-02T03-04-05-678Z.json'));
    expect(readFileSync(join(out, 'latest.json'), 'utf8')).toBe(readFileSync(path, 'utf8'));
  });
});

describe('npm run bench -- --quick', () => {
  it('runs every section but scale and writes results of the agreed shape', { timeout: 300_000 }, async () => {
    const out = join(dir, 'quick');
    // The scale section is left out: even quick, it runs a Dovecot of many accounts and a dozen
    // daemons for about two minutes on 2 shared cores (`node bench/run.ts --quick --only scale`).
    const bench = spawnTracked(process.execPath, ['bench/run.ts', '--quick', '--only', 'worker,sink,producer,latency', '--results-dir', out], { cwd: ROOT });
    expect(await bench.exited, bench.output().slice(-3000)).toBe(0);
    const files = readdirSync(out).sort();
    expect(files).toHaveLength(2);
    expect(files).toContain('latest.json');
    const results = JSON.parse(readFileSync(join(out, 'latest.json'), 'utf8')) as Array<Record<string, unknown>>;
    expect(results.length).toBeGreaterThanOrEqual(19);
    for (const r of results) {
      expect(Object.keys(r).sort()).toEqual(['baseline_name', 'baseline_value', 'met', 'name', 'ratio', 'target', 'unit', 'value']);
      expect(r.name).toMatch(/^(worker|producer|latency)_/);
      expect(typeof r.value).toBe('number');
      expect(typeof r.unit).toBe('string');
      expect(r.baseline_name === null || typeof r.baseline_name === 'string').toBe(true);
      expect(r.met === null || typeof r.met === 'boolean').toBe(true);
    }
    const names = results.map((r) => r.name);
    for (const name of ['worker_throughput_vs_ioredis_loop', 'worker_throughput_vs_bullmq', 'worker_scaling_2_processes', 'worker_steady_rss', 'worker_peak_rss',
      'producer_backfill_vs_sequential_loop', 'producer_backfill_vs_parse_ceiling', 'producer_redis_memory_per_1000_entries',
      'producer_backfill_file_store_vs_none', 'producer_redis_bytes_per_entry',
      'producer_peak_rss_25mb_attachment', 'latency_idle_p95', 'latency_poll_1s_p99']) {
      expect(names).toContain(name);
    }
    expect(bench.output()).toMatch(/^name\s+value\s+baseline\s+ratio\s+target/m);
  });
});
