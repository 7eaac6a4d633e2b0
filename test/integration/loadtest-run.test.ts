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
  it('pushes N emails through the producer and N workers and reports throughput and percentiles', async () => {
    const result = await runCli(['loadtest', '--emails', '300', '--workers', '2', '--json'], {}, { timeoutMs: 300_000 });
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as Report;
    expect(report).toMatchObject({ emails: 300, workers: 2, delivered: 300, duplicates: 0 });
    expect(report.emailsPerSecond).toBeGreaterThan(0);
    expect(report.latencySeconds.count).toBe(300);
    const { p50, p95, p99, max } = report.latencySeconds;
    expect(p50).toBeLessThanOrEqual(p95);
    expect(p95).toBeLessThanOrEqual(p99);
    expect(p99).toBeLessThanOrEqual(max);
  });

  it('uses the configured Redis under its own prefix and removes its keys afterwards', async () => {
    const client = redis.client();
    try {
      const result = await runCli(['loadtest', '--emails', '50', '--workers', '1'], { REDIS_URL: redis.url }, { timeoutMs: 300_000 });
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/50\/50 delivered, 0 duplicates, 1 worker/);
      expect(result.stdout).toMatch(/p50 \d+ ms {2}p95 \d+ ms {2}p99 \d+ ms/);
      const info = await client.info('commandstats');
      expect(info).toMatch(/cmdstat_xreadgroup:calls=[1-9]/);
      expect(await client.dbsize()).toBe(0);
    } finally {
      client.disconnect();
    }
  });
});
