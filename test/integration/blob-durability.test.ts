// The file store's durability, read from the system calls it makes (strace): an object's data is
// synced before it is renamed into place, and the directory of every rename (and the parent of
// every directory made) is synced before the put or the flush that covers it resolves. That order
// is what keeps "no entry points at a missing blob" true across a power cut, which no kill -9 test
// can show (the page cache survives a killed process). strace is installed by scripts/run.sh.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const STORE_MODULE = fileURLToPath(new URL('../../src/core/blobs/file-store.ts', import.meta.url));
const dirs: string[] = [];

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** One system call: where it started and ended in the trace (a call another thread interrupts spans lines). */
interface Call { name: string; args: string; result: string; start: number; end: number }

function parseTrace(text: string): Call[] {
  const calls: Call[] = [];
  const open = new Map<string, { name: string; args: string; start: number }>();
  text.split('\n').forEach((line, index) => {
    const unfinished = /^(\d+) +(\w+)\((.*) <unfinished \.\.\.>$/.exec(line);
    if (unfinished) return void open.set(unfinished[1]!, { name: unfinished[2]!, args: unfinished[3]!, start: index });
    const resumed = /^(\d+) +<\.\.\. (\w+) resumed>(.*)\) += (.*)$/.exec(line);
    if (resumed) {
      const begun = open.get(resumed[1]!);
      open.delete(resumed[1]!);
      if (begun) calls.push({ name: begun.name, args: begun.args + resumed[3]!, result: resumed[4]!, start: begun.start, end: index });
      return;
    }
    const whole = /^(\d+) +(\w+)\((.*)\) += (.*)$/.exec(line);
    if (whole) calls.push({ name: whole[2]!, args: whole[3]!, result: whole[4]!, start: index, end: index });
  });
  return calls.sort((a, b) => a.start - b.start);
}

const quoted = (args: string) => [...args.matchAll(/"([^"]*)"/g)].map((m) => m[1]!);

/** Each sync call with the path its file descriptor was opened on. */
function syncs(calls: Call[]): Array<{ path: string; start: number; end: number }> {
  const out: Array<{ path: string; start: number; end: number }> = [];
  for (const call of calls) {
    if (!['fsync', 'fdatasync'].includes(call.name) || call.result !== '0') continue;
    const fd = call.args.trim();
    // The open of this descriptor that happened last before the sync.
    const opened = calls.filter((c) => c.name === 'openat' && c.result.trim() === fd && c.end < call.start).pop();
    if (opened) out.push({ path: quoted(opened.args)[0]!, start: call.start, end: call.end });
  }
  return out;
}

/** Runs `script` (an ES module that gets `FileBlobStore` and `store`) under strace; the trace's calls. */
function traced(script: string): { calls: Call[]; storeDir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'ms-durability-'));
  dirs.push(dir);
  const storeDir = join(dir, 'store');
  const file = join(dir, 'script.mjs');
  writeFileSync(file, `import { accessSync } from 'node:fs';
const { FileBlobStore } = await import(${JSON.stringify(STORE_MODULE)});
const store = new FileBlobStore({ dir: ${JSON.stringify(storeDir)} });
const mark = (name) => { try { accessSync('/ms-durability-mark-' + name); } catch {} };
async function* chunked(data, size) { for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size); }
${script}`);
  const trace = join(dir, 'trace.txt');
  const run = spawnSync('strace', ['-f', '-qq', '-o', trace, '-e', 'trace=openat,close,fsync,fdatasync,rename,renameat,renameat2,mkdir,mkdirat,access,faccessat,faccessat2',
    process.execPath, file], { encoding: 'utf8' });
  expect(run.status, run.stderr).toBe(0);
  return { calls: parseTrace(readFileSync(trace, 'utf8')), storeDir };
}

/** Where the script called mark(name): the trace's position. */
function markAt(calls: Call[], name: string): number {
  const call = calls.find((c) => /access/.test(c.name) && quoted(c.args)[0] === `/ms-durability-mark-${name}`);
  expect(call, `mark ${name}`).toBeDefined();
  return call!.start;
}

/** Every rename into place and directory made in the store before `until`, each checked against the syncs. */
function expectDurableBefore(calls: Call[], storeDir: string, until: number): number {
  const synced = syncs(calls);
  const syncedAfter = (path: string, from: number) => synced.some((s) => s.path === path && s.start > from && s.end < until);
  let objects = 0;
  for (const call of calls.filter((c) => c.start < until && c.result === '0')) {
    const [from, to] = quoted(call.args);
    if (call.name.startsWith('rename') && /\/sha256\/[0-9a-f]{2}\/[0-9a-f]{2}\/[0-9a-f]{64}$/.test(to ?? '')) {
      objects += 1;
      expect(synced.some((s) => s.path === from && s.end < call.start), `data of ${to} synced before its rename`).toBe(true);
      expect(syncedAfter(dirname(to!), call.end), `directory of ${to} synced after its rename`).toBe(true);
    }
    if (call.name.startsWith('mkdir') && from!.startsWith(join(storeDir, 'sha256'))) {
      expect(syncedAfter(dirname(from!), call.end), `parent of the new directory ${from} synced`).toBe(true);
    }
  }
  return objects;
}

describe('file store durability (system calls)', () => {
  it('has strace to read them (scripts/run.sh installs it)', () => {
    expect(spawnSync('strace', ['-o', '/dev/null', 'true']).status).toBe(0);
  });

  it('puts with durable: false are synced together by flush: data before rename, directories before flush resolves', () => {
    const { calls, storeDir } = traced(`
const small = Array.from({ length: 12 }, (_, i) => Buffer.from('message ' + i));
const large = Buffer.alloc(3 * 1024 * 1024, 7);
const puts = await Promise.all([
  ...small.map((content) => store.put(content, { durable: false })),
  store.putStream(chunked(Buffer.from('streamed, small'), 4), { durable: false }),
  store.putStream(chunked(large, 256 * 1024), { durable: false }),
]);
mark('written');
await store.flush(puts.map((p) => p.ref));
mark('flushed');
`);
    const flushed = markAt(calls, 'flushed');
    expect(expectDurableBefore(calls, storeDir, flushed)).toBe(14);
    // Nothing was synced one put at a time: no directory sync before the barrier was asked for.
    const written = markAt(calls, 'written');
    expect(syncs(calls).filter((s) => s.start < written && !s.path.includes('/.tmp-') && !s.path.includes('/tmp/'))).toEqual([]);
  });

  it('a durable put is synced before it resolves, content already there too', () => {
    const { calls, storeDir } = traced(`
await store.put(Buffer.from('once'));
mark('first');
await store.put(Buffer.from('once'));
mark('again');
`);
    expect(expectDurableBefore(calls, storeDir, markAt(calls, 'first'))).toBe(1);
    // The second put found the object; its directories are synced anyway (another writer may not have got that far).
    const first = markAt(calls, 'first');
    const again = markAt(calls, 'again');
    expect(syncs(calls).filter((s) => s.start > first && s.end < again).length).toBeGreaterThan(0);
  });
});
