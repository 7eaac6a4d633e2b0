// `mailstream blob reindex`: the file store's index rebuilt from its packs after the index was lost
// (and `blob stat` on the result: an object's pack and offset, what the packs take on disk).
// Each record carries its size and hash, so every whole record comes back as a readable blob; a
// record whose bytes no longer match its hash is reported (exit 1) and never indexed, and a pack
// cut short by a crash is read up to its last whole record.
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, closeSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileBlobStore, INDEX_FILE, PACK_DIR, packBytes, type ReindexReport } from '../../src/core/blobs/file-store.ts';
import { blobBytes, useBlobTestbed } from '../helpers/blob-testbed.ts';
import { runCli } from '../helpers/cli.ts';

const testbed = useBlobTestbed();

const sha = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

describe('blob reindex', () => {
  it('brings back every whole record of a lost index, reports a damaged one and a pack cut short', async () => {
    const dir = testbed.tempDir('reindex');
    const writer = new FileBlobStore({ dir });
    const small = Array.from({ length: 20 }, (_, i) => Buffer.from(`message ${i}\r\n`));
    const large = randomBytes(3 * 1024 * 1024);
    const puts = await Promise.all([...small.map((c) => writer.put(c, { durable: false })), writer.putStream((async function* () { yield large; })(), { durable: false })]);
    await writer.flush(puts.map((p) => p.ref));
    const damaged = puts[3]!;
    const at = writer.locate(damaged.ref)!;
    await writer.close();
    // The index lost; one record's bytes changed on disk; a pack ending in half a record.
    for (const name of readdirSync(dir)) if (name.startsWith(INDEX_FILE)) rmSync(join(dir, name));
    const fd = openSync(at.path, 'r+');
    writeSync(fd, Buffer.from('X'), 0, 1, at.start);
    closeSync(fd);
    appendFileSync(at.path, Buffer.from('MSB1\0\0\0\0partial'));

    const env = { BLOB_STORE_URL: `file://${dir}`, LOG_LEVEL: 'warn' };
    const run = await runCli(['blob', 'reindex', '--json'], env);
    expect(run.code, run.stderr).toBe(1);
    const report = JSON.parse(run.stdout) as ReindexReport;
    expect(report).toMatchObject({ packs: readdirSync(join(dir, PACK_DIR)).length, records: puts.length, added: puts.length - 1, damaged: 1, cutShort: 1 });

    const reader = new FileBlobStore({ dir });
    for (const [i, content] of small.entries()) {
      if (i === 3) expect(await reader.stat(damaged.ref)).toBeNull();
      else expect(await blobBytes(reader, puts[i]!.ref)).toEqual(content);
    }
    expect(sha(await blobBytes(reader, puts[20]!.ref))).toBe(sha(large));
    await reader.close();

    // A second run finds everything indexed; the human-readable line says so.
    const again = await runCli(['blob', 'reindex'], env);
    expect(again.stdout).toMatch(/21 record\(s\) in \d pack file\(s\), 0 added to the index, 1 damaged/);

    // blob stat: where an object lies in its pack, and what the packs take on disk.
    const one = JSON.parse((await runCli(['blob', 'stat', puts[5]!.ref, '--json'], env)).stdout) as { path: string; offset: number; size: number };
    expect(one.path).toMatch(/^packs\/.+\.pack$/);
    expect(readFileSync(join(dir, one.path)).subarray(one.offset, one.offset + one.size)).toEqual(small[5]);
    const summary = JSON.parse((await runCli(['blob', 'stat', '--json'], env)).stdout) as { objects: number; packBytes: number };
    expect(summary).toMatchObject({ objects: puts.length - 1, packBytes: packBytes(dir) });
  });

  it('without a store: a configuration error naming BLOB_STORE_URL', async () => {
    const run = await runCli(['blob', 'reindex'], { BLOB_STORE_URL: 'none', LOG_LEVEL: 'warn' });
    expect(run.code).toBe(78);
    expect(run.stderr).toMatch(/BLOB_STORE_URL/);
  });
});
