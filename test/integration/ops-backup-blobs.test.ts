// The file blob store in backups: `mailstream backup` copies the blobs beside the logical export,
// only what is new each time, as loose files (sha256/<2>/<2>/<hex>) whatever the store keeps on
// disk; `mailstream blob check` finds a ref whose blob is missing, and `mailstream blob import` of
// the backup repairs it, as runbooks/blob-store.md says.
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { objectPath } from '../../src/core/blobs/blob-ref.ts';
import { FileBlobStore } from '../../src/core/blobs/file-store.ts';
import { accountKeys } from '../../src/core/keys.ts';
import { runCli } from '../helpers/cli.ts';
import { sampleEmail } from '../helpers/entries.ts';
import { uniquePrefix } from '../helpers/producer-env.ts';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.ts';

const ACCOUNT = 'a@example.com';
let redisServer: RedisServer;
let redis: Redis;
const dirs: string[] = [];

beforeAll(async () => {
  redisServer = await startRedisServer();
  redis = redisServer.client();
});

afterAll(async () => {
  redis?.disconnect();
  await redisServer?.destroy();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `ms-${name}-`));
  dirs.push(dir);
  return dir;
}

describe('backup and check of the file blob store', () => {
  it('backs the blobs up incrementally; blob check finds a missing one; importing the backup repairs it', async () => {
    const prefix = uniquePrefix('bb');
    const storeDir = tempDir('bb-store');
    const store = new FileBlobStore({ dir: storeDir });
    const keys = accountKeys(prefix, ACCOUNT);
    const refs: string[] = [];
    const contents = new Map<string, string>();
    for (let n = 1; n <= 5; n++) {
      const raw = await store.put(Buffer.from(`raw source of message ${n}`));
      const attachment = await store.put(Buffer.from(`attachment of message ${n}`));
      refs.push(raw.ref, attachment.ref);
      contents.set(raw.ref, `raw source of message ${n}`).set(attachment.ref, `attachment of message ${n}`);
      const email = { ...sampleEmail(ACCOUNT, n), raw: { ref: raw.ref, size: raw.size, sha256: raw.sha256 }, attachments: [{ filename: 'a.bin', contentType: 'application/octet-stream', size: attachment.size, sha256: attachment.sha256, contentId: null, disposition: 'attachment', ref: attachment.ref }] };
      await redis.xadd(n === 5 ? keys.dlq : keys.stream, '*', 'key', email.key, 'email', JSON.stringify(email));
    }
    await redis.sadd(`${prefix}:accounts`, ACCOUNT);
    const env = { REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: prefix, BLOB_STORE_URL: `file://${storeDir}` };
    const out = tempDir('bb-backup');

    const first = await runCli(['backup', '--out', out, '--logical-only'], env);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/blobs: .*\/blobs\n {2}10 in the store, 10 new copied/);
    for (const ref of refs) expect(readFileSync(join(out, 'blobs', objectPath(ref)), 'utf8'), ref).toBe(contents.get(ref));
    await store.put(Buffer.from('one more'));
    const second = await runCli(['backup', '--out', out, '--logical-only', '--json'], env);
    expect(second.code, second.stderr).toBe(0);
    expect((JSON.parse(second.stdout) as { blobs: unknown }).blobs).toMatchObject({ copied: true, objects: 11, newObjects: 1 });
    const skipped = await runCli(['backup', '--out', out, '--logical-only', '--no-blobs'], env);
    expect(skipped.stdout).toMatch(/blobs: not copied: skipped \(--no-blobs\)/);

    const healthy = await runCli(['blob', 'check'], env);
    expect(healthy.code, healthy.stderr).toBe(0);
    expect(healthy.stdout).toMatch(/10 blobs referenced by 5 stream and DLQ entries of 1 account\(s\); 0 missing/);

    // The DLQ entry's attachment is gone from the store: check names it and fails.
    await store.delete(refs[9]!);
    const broken = await runCli(['blob', 'check', '--json'], env);
    expect(broken.code).toBe(1);
    expect(JSON.parse(broken.stdout)).toMatchObject({ referenced: 10, missing: [refs[9]] });

    // The runbook's repair: import the backup's blobs; only the missing one is put.
    const imported = await runCli(['blob', 'import', join(out, 'blobs'), '--json'], env);
    expect(imported.code, imported.stderr).toBe(0);
    expect(JSON.parse(imported.stdout)).toMatchObject({ files: 11, imported: 1, alreadyThere: 10, damaged: [] });
    const repaired = await runCli(['blob', 'check'], env);
    expect(repaired.code, repaired.stdout).toBe(0);
    expect(readdirSync(out).filter((f) => f.endsWith('.jsonl.gz'))).toHaveLength(3);

    // A blob whose bytes were damaged in the store is reported (exit 1), never copied under its name.
    const damaged = refs[0]!;
    const at = store.locate(damaged)!;
    const fd = openSync(at.path, 'r+');
    writeSync(fd, Buffer.from('X'), 0, 1, at.start);
    closeSync(fd);
    rmSync(join(out, 'blobs', objectPath(damaged)));
    const third = await runCli(['backup', '--out', out, '--logical-only'], env);
    expect(third.code).toBe(1);
    expect(third.stdout).toContain(`1 damaged in the store (their bytes do not hash to their ref), not copied: ${damaged}`);
    expect(existsSync(join(out, 'blobs', objectPath(damaged)))).toBe(false);
    await store.close();
  });
});
