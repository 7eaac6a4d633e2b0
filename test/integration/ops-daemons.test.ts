// A running producer and worker as Prometheus and a load balancer see them: /metrics passes
// `promtool check metrics`, /ready turns 503 (with the reason) while Redis is stopped and 200
// once it is back, /health stays 200 throughout. Also the start/stop/health_check scripts.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateCorpus } from '../helpers/corpus.ts';
import { baseEnv, ROOT, runCli, startDaemon, type Daemon } from '../helpers/cli.ts';
import { startDovecot, type Dovecot } from '../helpers/dovecot.ts';
import { eventually, freePort } from '../helpers/ports.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { producerEnv } from '../helpers/producer-env.ts';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.ts';

const USER = 'user@example.com';
let dovecot: Dovecot;
let redisServer: RedisServer;
let dir: string;
let producer: Daemon;
let worker: Daemon;
let producerUrl: string;
let workerUrl: string;
let workerEnv: Record<string, string>;

async function httpUrl(daemon: Daemon): Promise<string> {
  return (await daemon.waitForLog((l) => l.msg === 'health and metrics listening', 'HTTP listener')).url as string;
}

beforeAll(async () => {
  [dovecot, redisServer] = await Promise.all([startDovecot(), startRedisServer({ aof: true })]);
  dovecot.seed(USER, 'INBOX', generateCorpus(20, { seed: 5 }).map((m) => m.raw));
  dir = mkdtempSync(join(tmpdir(), 'ms-ops-daemons-'));
  const env = producerEnv({ redisUrl: redisServer.url, dovecot, extra: { START_FROM: 'all' } });
  workerEnv = {
    REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: env.MAILSTREAM_PREFIX!, IMAP_USER: USER,
    SINK_URL: `file://${join(dir, 'out.jsonl')}`, HTTP_PORT: '0', READ_BLOCK_MS: '200',
  };
  producer = startDaemon(['producer'], env);
  worker = startDaemon(['worker'], workerEnv);
  [producerUrl, workerUrl] = await Promise.all([httpUrl(producer), httpUrl(worker)]);
  await eventually(() => {
    try { return readFileSync(join(dir, 'out.jsonl'), 'utf8').trim().split('\n').length >= 20; } catch { return false; }
  }, { what: '20 emails delivered' });
});

afterAll(async () => {
  await Promise.all([producer?.stop(), worker?.stop()]);
  await Promise.all([dovecot?.destroy(), redisServer?.destroy()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
  expect(await killAllTracked()).toBe(0);
});

function promtoolCheckMetrics(text: string) {
  const result = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  return { code: result.status, problems: `${result.stdout}${result.stderr}`.split('\n').filter(Boolean) };
}

function value(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : NaN;
}

describe('producer and worker daemons', () => {
  it('/metrics of both passes promtool check metrics, with the pipeline visible in it', async () => {
    for (const [role, url] of [['producer', producerUrl], ['worker', workerUrl]] as const) {
      const response = await fetch(`${url}/metrics`);
      expect(response.status).toBe(200);
      const text = await response.text();
      const { code, problems } = promtoolCheckMetrics(text);
      // Exit 3 is "lint problems" (0 none, 1 unparsable). prom-client's own default gauges
      // nodejs_active_*_total trip the _total rule; nothing of ours may.
      expect([0, 3], problems.join('\n')).toContain(code);
      expect(problems.filter((p) => !/^nodejs_active_\w+_total non-counter metrics should not have "_total" suffix$/.test(p)), role).toEqual([]);
      expect(value(text, `mailstream_build_info{role="${role}",version="0.1.0"}`)).toBe(1);
      expect(value(text, 'mailstream_ready'), role).toBe(1);
      expect(value(text, 'mailstream_redis_up'), role).toBe(1);
      if (role === 'producer') expect(value(text, `mailstream_emails_appended_total{account="${USER}",mailbox="INBOX"}`)).toBe(20);
      else expect(value(text, 'mailstream_emails_delivered_total{sink="jsonl"}')).toBe(20);
    }
  });

  it('/ready answers 503 with the reason while Redis is stopped, 200 once it is back; /health stays 200', async () => {
    for (const url of [producerUrl, workerUrl]) expect((await fetch(`${url}/ready`)).status).toBe(200);
    await redisServer.stop();
    try {
      for (const url of [producerUrl, workerUrl]) {
        const body = await eventually(async () => {
          const response = await fetch(`${url}/ready`);
          return response.status === 503 ? await response.json() as { status: string; reasons: string[] } : undefined;
        }, { what: `${url}/ready 503` });
        expect(body.status).toBe('not ready');
        expect(body.reasons.join('; ')).toMatch(/redis/i);
        expect((await fetch(`${url}/health`)).status).toBe(200);
        const metrics = await (await fetch(`${url}/metrics`)).text();
        expect(value(metrics, 'mailstream_ready')).toBe(0);
        expect(value(metrics, 'mailstream_redis_up')).toBe(0);
      }
    } finally {
      await redisServer.start();
    }
    for (const url of [producerUrl, workerUrl]) {
      await eventually(async () => (await fetch(`${url}/ready`)).status === 200, { what: `${url}/ready 200 again` });
    }
  });

  it('a worker whose HTTP port is taken exits 1 naming HTTP_PORT, and does not hang on its open connections', async () => {
    const taken = new URL(workerUrl).port;
    const result = await runCli(['worker'], { ...workerEnv, HTTP_PORT: taken }, { timeoutMs: 30_000 });
    expect(result.code, result.stderr).toBe(1);
    expect(result.stderr).toMatch(new RegExp(`cannot listen on 127\\.0\\.0\\.1:${taken} \\(HTTP_HOST/HTTP_PORT\\): the port is in use`));
  });

  it('scripts/start.sh, health_check.sh and stop.sh run a worker without systemd', async () => {
    const runDir = join(dir, 'run');
    const port = await freePort();
    const env = { ...baseEnv(workerEnv), HTTP_PORT: '', MAILSTREAM_RUN_DIR: runDir, WORKER_BASE_PORT: String(port), MAILSTREAM_ENV_FILE: join(dir, 'none.env') };
    const script = (name: string, ...args: string[]) => spawnSync('bash', [join(ROOT, 'scripts', name), ...args], { env, encoding: 'utf8', timeout: 60_000 });
    const started = script('start.sh', 'worker', '1');
    expect(started.stderr).toBe('');
    expect(started.status).toBe(0);
    expect(started.stdout).toMatch(new RegExp(`worker-1: started \\(pid \\d+, http://127.0.0.1:${port}`));
    const pid = Number(readFileSync(join(runDir, 'worker-1.pid'), 'utf8'));
    try {
      const healthy = script('health_check.sh');
      expect(healthy.stdout).toContain(`worker-1: ok (http://127.0.0.1:${port}/ready)`);
      expect(healthy.status).toBe(0);
      expect(script('start.sh', 'worker', '1').stdout).toMatch(/worker-1: already running/);
      expect(script('health_check.sh', '--url', 'http://127.0.0.1:1/ready').status).toBe(1);
      const stopped = script('stop.sh', 'worker');
      expect(stopped.stdout).toContain('worker-1: stopped');
      expect(stopped.status).toBe(0);
      expect(() => process.kill(pid, 0)).toThrow();
      // The worker stopped on SIGTERM the graceful way: its log says so.
      expect(readFileSync(join(runDir, 'worker-1.log'), 'utf8')).toMatch(/"msg":"[^"]*(shut|stop)/i);
      const unhealthy = script('health_check.sh');
      expect(unhealthy.status).toBe(1);
    } finally {
      try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
    }
  });
});
