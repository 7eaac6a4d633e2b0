// `mailstream blob import <dir>` as operators run it after a restore or to move a file store to S3:
// loose blob files (a backup's blobs folder) go into the configured store, a file whose content
// does not match its name is reported as damaged (exit 1) and never stored as that blob, and a
// second run finds everything there already.
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { objectPath, refOf } from '../../src/core/blobs/blob-ref.ts';
import type { BlobStore } from '../../src/core/blobs/blob-store.ts';
import { FileBlobStore } from '../../src/core/blobs/file-store.ts';
import type { ImportReport } from '../../src/ops/blob-import.ts';
import { runCli } from '../helpers/cli.ts';
import { blobBytes, useBlobTestbed } from '../helpers/blob-testbed.ts';

const testbed = useBlobTestbed({ s3: true });
const tempDir = (name: string): string => testbed.tempDir(name);

const sha = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

function writeLoose(root: string, name: string, content: Buffer): void {
  const path = join(root, objectPath(refOf(name)));
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content);
}

/** Three good blobs (one past the stores' 1 MiB in-memory limit), one damaged, one leftover temp file. */
function backupFolder(): { dir: string; good: Map<string, Buffer>; damagedRef: string; damagedPath: string } {
  const dir = tempDir('import-src');
  const good = new Map<string, Buffer>();
  for (const content of [Buffer.from('raw source of a message\r\n'), Buffer.from('an attachment'), randomBytes(3 * 1024 * 1024)]) {
    good.set(refOf(sha(content)), content);
    writeLoose(dir, sha(content), content);
  }
  const damagedName = sha(Buffer.from('what the blob held'));
  writeLoose(dir, damagedName, Buffer.from('what the disk gave back'));
  const anyGood = objectPath([...good.keys()][0]!);
  writeFileSync(join(dir, `${anyGood}.1a2b3c4d.tmp`), 'partial copy');
  return { dir, good, damagedRef: refOf(damagedName), damagedPath: objectPath(refOf(damagedName)) };
}

const backends = [
  {
    backend: 'file',
    target: () => {
      const dir = tempDir('import-store');
      return { env: { BLOB_STORE_URL: `file://${dir}` }, open: (): BlobStore => testbed.track(new FileBlobStore({ dir })) };
    },
  },
  {
    backend: 's3',
    target: () => {
      const prefix = `import-${randomBytes(3).toString('hex')}`;
      return {
        env: testbed.s3.env(prefix),
        open: (): BlobStore => testbed.s3Store(`${prefix}/`),
      };
    },
  },
];

describe.each(backends)('blob import into a $backend store', ({ target }) => {
  it('imports the good blobs, reports the damaged one (exit 1), and finds them there on a second run', async () => {
    const { dir, good, damagedRef, damagedPath } = backupFolder();
    const { env, open } = target();

    const dry = await runCli(['blob', 'import', dir, '--dry-run', '--json'], env);
    expect(dry.code, dry.stderr).toBe(1);
    expect(JSON.parse(dry.stdout)).toMatchObject({ dryRun: true, files: 4, imported: 3, alreadyThere: 0, ignored: 1, damaged: [{ path: damagedPath }] });

    const first = await runCli(['blob', 'import', dir], env);
    expect(first.code, first.stderr).toBe(1);
    expect(first.stdout).toContain(`4 blob file(s) in ${dir}`);
    expect(first.stdout).toMatch(/imported 3 \(3\.0 MiB\), 0 already there, 1 damaged, 1 other file\(s\) ignored/);
    const store = open();
    expect(first.stdout).toContain(`damaged ${damagedPath}: its content hashes to sha256:${sha(Buffer.from('what the disk gave back'))}`);
    for (const [ref, content] of good) expect((await blobBytes(store, ref)).equals(content), ref).toBe(true);
    expect(await store.stat(damagedRef)).toBeNull();

    const second = await runCli(['blob', 'import', dir, '--json'], env);
    expect(second.code, second.stderr).toBe(1);
    const report = JSON.parse(second.stdout) as ImportReport;
    expect(report).toMatchObject({ dryRun: false, files: 4, imported: 0, importedBytes: 0, alreadyThere: 3, ignored: 1 });
    expect(report.damaged).toEqual([{ path: damagedPath, actual: `sha256:${sha(Buffer.from('what the disk gave back'))}` }]);
  });
});

describe('blob import', () => {
  it('exits 0 when nothing is damaged, and refuses a folder without sha256/ (exit 2)', async () => {
    const dir = tempDir('import-clean');
    const content = Buffer.from('fine');
    writeLoose(dir, sha(content), content);
    const { env } = backends[0]!.target();
    const clean = await runCli(['blob', 'import', dir], env);
    expect(clean.code, clean.stderr).toBe(0);
    expect(clean.stdout).toMatch(/imported 1 .*, 0 already there, 0 damaged\n/);

    const wrong = await runCli(['blob', 'import', tempDir('import-empty')], env);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/holds no sha256\/ folder/);
  });
});
