// The file store's durability, read from the system calls it makes (strace): a batch's pack data
// is synced before the index rows naming it are written, the index's log is synced before the
// flush resolves, and a new pack's directory entry too. Compaction removes an old pack only after
// the copies and the index's move are synced. That order is what keeps "no entry points at a
// missing blob" true across a power cut, which no kill -9 test can show (the page cache survives a
// killed process). strace is installed by scripts/run.sh.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
  const run = spawnSync('strace', ['-f', '-qq', '-o', trace, '-e', 'trace=openat,close,fsync,fdatasync,pwrite64,write,unlink,unlinkat,access,faccessat,faccessat2',
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

/** Each call on a file descriptor (fd first argument) with the path that descriptor was opened on. */
function onFiles(calls: Call[], names: string[]): Array<Call & { path: string }> {
  const out: Array<Call & { path: string }> = [];
  for (const call of calls) {
    if (!names.includes(call.name) || !/^\d/.test(call.result.trim()) || call.result.trim().startsWith('-')) continue;
    const fd = /^(\d+)/.exec(call.args.trim())?.[1];
    const opened = calls.filter((c) => c.name === 'openat' && c.result.trim() === fd && c.end < call.start).pop();
    if (opened) out.push({ ...call, path: quoted(opened.args)[0]! });
  }
  return out;
}

const isPack = (path: string) => /\/packs\/[^/]+\.pack$/.test(path);
const isLog = (path: string) => path.endsWith('/index.sqlite-wal');

/**
 * Between `from` and `until`: every pack written was synced before the index's last log write (the
 * commit of the rows naming its objects; a new pack's own row may come before), the log was synced
 * after that write, and the packs directory was synced. Answers how many packs were synced.
 */
function expectBatchOrder(calls: Call[], storeDir: string, from: number, until: number): number {
  const inWindow = (c: Call) => c.start > from && c.end < until;
  const writes = onFiles(calls, ['pwrite64', 'write']).filter(inWindow);
  const synced = onFiles(calls, ['fdatasync', 'fsync']).filter(inWindow);
  const packsWritten = new Set(writes.filter((w) => isPack(w.path)).map((w) => w.path));
  const logWrites = writes.filter((w) => isLog(w.path));
  expect(logWrites.length, 'the index rows written').toBeGreaterThan(0);
  const lastLogWrite = Math.max(...logWrites.map((w) => w.end));
  const packSyncs = synced.filter((s) => isPack(s.path));
  for (const pack of packsWritten) {
    expect(packSyncs.some((s) => s.path === pack && s.end < Math.max(...logWrites.map((w) => w.start))), `${pack} synced before its index rows`).toBe(true);
  }
  expect(synced.some((s) => isLog(s.path) && s.start > lastLogWrite), 'the index log synced after the rows').toBe(true);
  expect(synced.some((s) => s.path === join(storeDir, 'packs')), 'the packs directory synced (new pack names)').toBe(true);
  return new Set(packSyncs.map((s) => s.path)).size;
}

describe('file store durability (system calls)', () => {
  it('has strace to read them (scripts/run.sh installs it)', () => {
    expect(spawnSync('strace', ['-o', '/dev/null', 'true']).status).toBe(0);
  });

  it('puts with durable: false are synced together by flush: packs, then index rows, then the index log', () => {
    const { calls, storeDir } = traced(`
await store.probe();
mark('opened');
const small = Array.from({ length: 12 }, (_, i) => Buffer.from('message ' + i));
const large = Buffer.alloc(3 * 1024 * 1024, 7);
const puts = await Promise.all([
  ...small.map((content) => store.put(content, { durable: false })),
  store.putStream(chunked(Buffer.from('streamed, small'), 4), { durable: false }),
  store.putStream(chunked(large, 256 * 1024), { durable: false }),
]);
mark('written');
// Not indexed yet: another reader of the store does not find them.
const reader = new FileBlobStore({ dir: store.location });
for (const p of puts) if (await reader.stat(p.ref)) throw new Error(p.ref + ' indexed before its flush');
await store.flush(puts.map((p) => p.ref));
mark('flushed');
`);
    const opened = markAt(calls, 'opened');
    const written = markAt(calls, 'written');
    const flushed = markAt(calls, 'flushed');
    // Nothing was synced one put at a time.
    expect(onFiles(calls, ['fdatasync', 'fsync']).filter((c) => c.start > opened && c.end < written)).toEqual([]);
    // Two packs: the small objects' shared one and the large object's own.
    expect(expectBatchOrder(calls, storeDir, written, flushed)).toBe(2);
  });

  it('a durable put is synced before it resolves; content already there has the index log synced too', () => {
    const { calls, storeDir } = traced(`
mark('start');
await store.put(Buffer.from('once'));
mark('first');
await store.put(Buffer.from('once'));
mark('again');
`);
    const first = markAt(calls, 'first');
    expect(expectBatchOrder(calls, storeDir, markAt(calls, 'start'), first)).toBe(1);
    // Another writer's rows the second put found may not be synced yet: the log is synced anyway.
    const again = markAt(calls, 'again');
    expect(onFiles(calls, ['fdatasync', 'fsync']).filter((s) => s.start > first && s.end < again && isLog(s.path)).length).toBeGreaterThan(0);
  });

  it('compaction removes an old pack only once the copies and the index move are synced', () => {
    const { calls, storeDir } = traced(`
import { DatabaseSync } from 'node:sqlite';
import { readdirSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
const keep = await store.put(Buffer.from('kept'));
const drop = await Promise.all(Array.from({ length: 10 }, (_, i) => store.put(Buffer.from('dropped ' + i + ' '.repeat(100)))));
await store.close();
const past = new Date(Date.now() - 2 * 86400000);
const db = new DatabaseSync(join(store.location, 'index.sqlite'));
db.prepare('UPDATE objects SET put_at = ?').run(past.getTime());
db.close();
for (const name of readdirSync(join(store.location, 'packs'))) utimesSync(join(store.location, 'packs', name), past, past);
const cutoff = new Date(Date.now() - 86400000);
for (const d of drop) await store.deleteIfOlderThan(d.ref, cutoff);
const gc = new FileBlobStore({ dir: store.location });
mark('compacting');
const report = await gc.compact(cutoff, false);
mark('compacted');
if (report.packs !== 1) throw new Error('expected one pack compacted, got ' + JSON.stringify(report));
`);
    const from = markAt(calls, 'compacting');
    const until = markAt(calls, 'compacted');
    const removed = calls.filter((c) => c.name.startsWith('unlink') && c.start > from && c.end < until && c.result === '0' && isPack(quoted(c.args)[0] ?? ''));
    expect(removed).toHaveLength(1);
    expectBatchOrder(calls, storeDir, from, removed[0]!.start);
  });
});
