import { describe, expect, it } from 'vitest';
import { percentile, summarize } from '../../src/ops/percentiles.ts';
import { formatCounts } from '../../src/ops/demo/progress.ts';

describe('percentiles', () => {
  it('takes the nearest rank', () => {
    const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(sorted, 50)).toBe(50);
    expect(percentile(sorted, 95)).toBe(95);
    expect(percentile(sorted, 99)).toBe(99);
    expect(percentile(sorted, 100)).toBe(100);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBeNaN();
  });

  it('summarizes an unsorted sample without changing it', () => {
    const sample = [0.3, 0.1, 0.2, 0.9, 0.5];
    expect(summarize(sample)).toEqual({ count: 5, p50: 0.3, p95: 0.9, p99: 0.9, max: 0.9 });
    expect(sample).toEqual([0.3, 0.1, 0.2, 0.9, 0.5]);
  });
});

describe('demo progress line', () => {
  it('fills the bar by delivered share', () => {
    expect(formatCounts({ appended: 10, delivered: 5, expected: 10 })).toBe(`[${'#'.repeat(15)}${'.'.repeat(15)}] appended 10/10  delivered 5/10`);
    expect(formatCounts({ appended: 0, delivered: 0, expected: 0 })).toContain('delivered 0/0');
  });
});
