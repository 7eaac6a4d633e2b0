// `mailstream loadtest` through the CLI: every email arrives once across the workers, and the
// report has throughput and latency percentiles. With REDIS_URL set it uses that Redis and
// leaves none of its keys behind.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.ts';

let redis: RedisServer;

beforeAll(async () => { redis = await startRedisServer(); });

afterAll(async () => {
  await redis?.destroy();
  expect(await killAllTracked()).toBe(0);
});

interface Report {
  emails: number; workers: number; delivered: number; duplicates: number; seconds: number; emailsPerSecond: number;
  appendSeconds: number; latencySeconds: { count: number; p50: number; p95: number; p99: number; max: number };
}

describe('mailstream loadtest', () => {
  it('pushes N emails through the producer and N workers, reports throughput and percentiles, and cleans up the Redis it was given', async () => {
    const client = redis.client();
    try {
      const result = await runCli(['loadtest', '--emails', '300', '--workers', '2', '--json'], { REDIS_URL: redis.url }, { timeoutMs: 300_000 });
      expect(result.code, result.stderr).toBe(0);
      const report = JSON.parse(result.stdout) as Report;
      expect(report).toMatchObject({ emails: 300, workers: 2, delivered: 300, duplicates: 0 });
      expect(report.emailsPerSecond).toBeGreaterThan(0);
      expect(report.latencySeconds.count).toBe(300);
      const { p50, p95, p99, max } = report.latencySeconds;
      expect(p50).toBeLessThanOrEqual(p95);
      expect(p95).toBeLessThanOrEqual(p99);
      expect(p99).toBeLessThanOrEqual(max);
      // It ran on this Redis (its workers read here) and left none of its keys behind.
      expect(await client.info('commandstats')).toMatch(/cmdstat_xreadgroup:calls=[1-9]/);
      expect(await client.dbsize()).toBe(0);
    } finally {
      client.disconnect();
    }
  });

  it('prints a readable report', async () => {
    const { formatLoadtest } = await import('../../src/ops/loadtest.ts');
    const text = formatLoadtest({ emails: 50, workers: 1, delivered: 50, duplicates: 0, seconds: 0.5, emailsPerSecond: 100, appendSeconds: 0.4, latencySeconds: { count: 50, p50: 0.1, p95: 0.2, p99: 0.25, max: 0.3 } });
    expect(text).toMatch(/50\/50 delivered, 0 duplicates, 1 worker/);
    expect(text).toMatch(/throughput 100 emails\/s/);
    expect(text).toMatch(/p50 100 ms {2}p95 200 ms {2}p99 250 ms {2}max 300 ms/);
  });
});
