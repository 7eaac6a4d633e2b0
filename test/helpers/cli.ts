// Runs `mailstream` as operators do: a separate process of bin/mailstream.js, with only the
// environment the test gives it. Daemon output is parsed as JSON log lines.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { spawnTracked, stopProcess, type Tracked } from './processes.ts';
import { clusterNodesFor } from './test-redis.ts';

export const BIN = fileURLToPath(new URL('../../bin/mailstream.js', import.meta.url));
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A clean environment: nothing from the developer's shell leaks into the child's settings. */
export function baseEnv(extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root', LOG_LEVEL: 'info' };
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  // A REDIS_URL of a test cluster (MAILSTREAM_TEST_REDIS=cluster) brings the cluster's nodes along.
  const clusterNodes = env.REDIS_URL && !env.REDIS_CLUSTER_NODES ? clusterNodesFor(env.REDIS_URL) : undefined;
  if (clusterNodes) env.REDIS_CLUSTER_NODES = clusterNodes;
  return env;
}

export interface CliResult { code: number | null; stdout: string; stderr: string }

export function runCli(args: string[], env: Record<string, string | undefined> = {}, options: { input?: string; cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--', BIN, ...args], { env: baseEnv(env), cwd: options.cwd ?? ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d; });
    child.stderr.on('data', (d: Buffer) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
    child.stdin.end(options.input ?? '');
  });
}

export interface LogLine { level: string; msg: string; [field: string]: unknown }

export function parseLogLines(text: string): LogLine[] {
  return text.split('\n').filter((l) => l.startsWith('{')).flatMap((l) => {
    try { return [JSON.parse(l) as LogLine]; } catch { return []; }
  });
}

export interface Daemon {
  tracked: Tracked;
  logs(): LogLine[];
  output(): string;
  /** Resolves with the first log line matching; rejects if the process exits first. */
  waitForLog(match: (line: LogLine) => boolean, what?: string): Promise<LogLine>;
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

export function startDaemon(args: string[], env: Record<string, string | undefined>): Daemon {
  const tracked = spawnTracked(process.execPath, ['--', BIN, ...args], { env: baseEnv(env), cwd: ROOT });
  const daemon: Daemon = {
    tracked,
    output: () => tracked.output(),
    logs: () => parseLogLines(tracked.output()),
    async waitForLog(match, what = 'log line') {
      for (;;) {
        const found = daemon.logs().find(match);
        if (found) return found;
        const exited = await Promise.race([tracked.exited.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 50))]);
        if (exited) {
          const again = daemon.logs().find(match);
          if (again) return again;
          throw new Error(`process exited before ${what}; output:\n${tracked.output().slice(-4000)}`);
        }
      }
    },
    stop: (signal = 'SIGTERM') => stopProcess(tracked, signal, 30_000),
  };
  return daemon;
}
