// `mailstream demo` as an operator runs it, from an empty directory with nothing configured: every
// seeded and live email lands in demo-output/emails.jsonl exactly once, the output says where to
// look, and everything the demo started is gone afterwards, also when it is stopped by a signal.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileBlobStore } from '../../src/core/blobs/file-store.ts';
import { BIN, baseEnv, parseLogLines, runCli } from '../helpers/cli.ts';
import { generateCorpus } from '../helpers/corpus.ts';
import { killAllTracked, spawnTracked } from '../helpers/processes.ts';
import { eventually } from '../helpers/ports.ts';

const dirs: string[] = [];
function emptyDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ms-demo-test-'));
  dirs.push(dir);
  return dir;
}

afterAll(async () => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  expect(await killAllTracked()).toBe(0);
});

/** The pids the demo reports in its last line, `Stopped: name (pid N), ...`. */
function reportedPids(stdout: string): Array<{ name: string; pid: number }> {
  const line = stdout.split('\n').find((l) => l.startsWith('Stopped: ')) ?? '';
  return [...line.matchAll(/([\w.-]+) \(pid (\d+)\)/g)].map((m) => ({ name: m[1]!, pid: Number(m[2]) }));
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

const bare = (id: string | null | undefined) => (id ?? '').replace(/^<|>$/g, '');

describe('mailstream demo', () => {
  it('delivers every seeded and live email exactly once, says where to look, and stops what it started', async () => {
    const cwd = emptyDir();
    const result = await runCli(['demo', '--emails', '200', '--live', '3', '--exit-when-done'], {}, { cwd, timeoutMs: 300_000 });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);

    const lines = readFileSync(join(cwd, 'demo-output', 'emails.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    const emailOf = (line: Record<string, unknown>) => ((line.email as Record<string, unknown> | undefined) ?? line);
    const keys = lines.map((l) => String(l.key ?? emailOf(l).key));
    expect(lines).toHaveLength(203);
    expect(new Set(keys).size).toBe(203);
    const delivered = new Set(lines.map((l) => bare(emailOf(l).messageId as string | null)));
    const sent = [...generateCorpus(200, { seed: 1, tag: 'demo' }), ...generateCorpus(3, { seed: 2, tag: 'demo-live' })];
    for (const mail of sent.filter((m) => m.messageId)) expect(delivered.has(mail.messageId!)).toBe(true);
    // The three live ones came through IMAP APPEND after the backfill, and the producer heard of
    // them through IDLE (not a poll: the default poll interval is a minute).
    expect(result.stdout).toMatch(/All 200 seeded emails delivered/);
    const producerLog = parseLogLines(readFileSync(join(cwd, 'demo-output', 'producer.log'), 'utf8'));
    expect(producerLog.filter((l) => l.msg === 'new mail' && l.via === 'idle').reduce((n, l) => n + Number(l.appended), 0)).toBe(3);

    expect(result.stdout).toMatch(/http:\/\/127\.0\.0\.1:\d+\/metrics/);
    expect(result.stdout).toMatch(/http:\/\/127\.0\.0\.1:\d+\/status/);
    expect(result.stdout).toMatch(/REDIS_URL=redis:\/\/127\.0\.0\.1:\d+ IMAP_USER=\S+ npx mailstream status/);
    expect(result.stdout).toContain(join(cwd, 'demo-output', 'emails.jsonl'));
    // Raw sources in the demo's own blob store, where the output says.
    expect(result.stdout).toContain(join(cwd, 'demo-output', 'blobs'));
    const store = new FileBlobStore({ dir: join(cwd, 'demo-output', 'blobs') });
    try {
      for (const line of lines) {
        const raw = emailOf(line).raw as { ref: string; size: number } | undefined;
        expect(raw?.ref).toMatch(/^sha256:/);
        expect(await store.stat(raw!.ref)).toMatchObject({ size: raw!.size });
      }
    } finally {
      await store.close();
    }

    const pids = reportedPids(result.stdout);
    expect(pids.map((p) => p.name).sort()).toEqual(['dovecot', 'producer', 'redis-server', 'worker']);
    for (const { pid } of pids) expect(alive(pid)).toBe(false);
  });

  it('stops everything it started on SIGINT (Ctrl-C) in the middle of a run and exits 0', async () => {
    const cwd = emptyDir();
    const demo = spawnTracked(process.execPath, ['--', BIN, 'demo', '--emails', '40'], { cwd, env: baseEnv() });
    await eventually(() => / appended \d+\/45 /.test(demo.output()), { attempts: 1500, what: 'the demo to show its first counts' });
    demo.child.kill('SIGINT');
    expect(await demo.exited).toBe(0);
    const pids = reportedPids(demo.output());
    expect(pids).toHaveLength(4);
    for (const { pid } of pids) expect(alive(pid)).toBe(false);
  });
});
