// The file store: one file per object under a directory, at the object's content address. A put
// writes a temporary file in the same directory tree, syncs it, and renames it into place, so an
// object is either whole or absent; a crash leaves at most a temporary file (swept by `blob gc`).
// Putting content that is there already only refreshes the file's time: `blob gc` goes by that
// time, so a blob that a new entry refers to again is never collected from under it.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, unlink, utimes, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { BlobNotFoundError, BlobStoreUnavailableError } from '../errors.ts';
import { objectPath, refOf, refOfPath } from './blob-ref.ts';
import type { BlobContent, BlobStat, BlobStore, PutResult } from './blob-store.ts';

export interface FileStoreOptions {
  dir: string;
  /**
   * fsync each object and its directory before a put resolves: without it a power cut may lose
   * objects whose entries Redis kept. @default true
   */
  fsync?: boolean;
}

/** Temporary files (writes under way, or left by a crash) live here, on the same filesystem. */
export const TMP_DIR = 'tmp';

const isMissing = (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT';

export class FileBlobStore implements BlobStore {
  readonly kind = 'file' as const;
  readonly location: string;
  private readonly dir: string;
  private readonly fsync: boolean;
  /** Directories known to exist, so a put does not ask again. */
  private readonly made = new Set<string>();

  constructor(options: FileStoreOptions) {
    this.dir = options.dir;
    this.location = options.dir;
    this.fsync = options.fsync ?? true;
  }

  pathOf(ref: string): string {
    return join(this.dir, objectPath(ref));
  }

  async put(content: Uint8Array): Promise<PutResult> {
    const sha256 = createHash('sha256').update(content).digest('hex');
    return this.guard('write', async () => {
      const ref = refOf(sha256);
      if (await this.refresh(ref)) return { ref, sha256, size: content.byteLength, created: false };
      const tmp = await this.tempFile();
      try {
        await tmp.handle.write(content);
        return await this.commit(tmp, sha256, content.byteLength);
      } catch (err) {
        await tmp.discard();
        throw err;
      }
    });
  }

  async putStream(content: BlobContent): Promise<PutResult> {
    return this.guard('write', async () => {
      const tmp = await this.tempFile();
      try {
        const hash = createHash('sha256');
        let size = 0;
        for await (const chunk of content) {
          hash.update(chunk);
          size += chunk.byteLength;
          await tmp.handle.write(chunk);
        }
        const sha256 = hash.digest('hex');
        if (await this.refresh(refOf(sha256))) {
          await tmp.discard();
          return { ref: refOf(sha256), sha256, size, created: false };
        }
        return await this.commit(tmp, sha256, size);
      } catch (err) {
        await tmp.discard();
        throw err;
      }
    });
  }

  async open(ref: string): Promise<Readable> {
    const path = this.pathOf(ref);
    const stream = createReadStream(path);
    // Surface a missing file as the typed error now, not as a stream error later.
    await new Promise<void>((resolve, reject) => {
      stream.once('open', () => resolve());
      stream.once('error', (err) => reject(isMissing(err) ? new BlobNotFoundError(ref, this.location) : new BlobStoreUnavailableError(`blob store ${this.location}: ${err.message}`, { cause: err })));
    });
    return stream;
  }

  async stat(ref: string): Promise<BlobStat | null> {
    try {
      const s = await stat(this.pathOf(ref));
      return { ref, size: s.size, modifiedAt: s.mtime };
    } catch (err) {
      if (isMissing(err)) return null;
      throw new BlobStoreUnavailableError(`blob store ${this.location}: ${(err as Error).message}`, { cause: err });
    }
  }

  async *list(): AsyncIterable<BlobStat> {
    const root = join(this.dir, 'sha256');
    for (const a of await names(root)) {
      for (const b of await names(join(root, a))) {
        for (const name of await names(join(root, a, b))) {
          const ref = refOfPath(`sha256/${a}/${b}/${name}`);
          if (!ref) continue;
          const s = await stat(join(root, a, b, name)).catch(() => null);
          if (s) yield { ref, size: s.size, modifiedAt: s.mtime };
        }
      }
    }
  }

  async delete(ref: string): Promise<boolean> {
    try {
      await unlink(this.pathOf(ref));
      return true;
    } catch (err) {
      if (isMissing(err)) return false;
      throw err;
    }
  }

  /**
   * Deletes an object only if no put refreshed it since `cutoff`. The object is first moved aside
   * (atomically), then its time is read again: a put that came in between either refreshed it
   * before the move (the object is moved back) or found it gone and wrote it anew.
   */
  async deleteIfOlderThan(ref: string, cutoff: Date): Promise<boolean> {
    const path = this.pathOf(ref);
    const aside = join(this.dir, TMP_DIR, `gc-${randomBytes(8).toString('hex')}`);
    await this.ensureDir(dirname(aside));
    try {
      await rename(path, aside);
    } catch (err) {
      if (isMissing(err)) return false;
      throw err;
    }
    const s = await stat(aside);
    if (s.mtime >= cutoff) {
      // A put refreshed it: put it back, unless a newer put already wrote it again.
      await rename(aside, path).catch(() => unlink(aside));
      return false;
    }
    await unlink(aside);
    return true;
  }

  /** Temporary files older than `cutoff` (left by a crash mid-write); returns how many went. */
  async sweepTemporary(cutoff: Date, dryRun: boolean): Promise<number> {
    let removed = 0;
    for (const name of await names(join(this.dir, TMP_DIR))) {
      const path = join(this.dir, TMP_DIR, name);
      const s = await stat(path).catch(() => null);
      if (!s || s.mtime >= cutoff) continue;
      if (!dryRun) await rm(path, { force: true });
      removed += 1;
    }
    return removed;
  }

  async probe(): Promise<void> {
    await this.put(new Uint8Array(0));
  }

  async close(): Promise<void> {}

  /** An existing object gets a fresh time (see the file's header); false when there is none. */
  private async refresh(ref: string): Promise<boolean> {
    const now = new Date();
    try {
      await utimes(this.pathOf(ref), now, now);
      return true;
    } catch (err) {
      if (isMissing(err)) return false;
      throw err;
    }
  }

  private async tempFile(): Promise<{ handle: FileHandle; path: string; discard(): Promise<void> }> {
    const dir = join(this.dir, TMP_DIR);
    await this.ensureDir(dir);
    const path = join(dir, `put-${randomBytes(8).toString('hex')}`);
    const handle = await open(path, 'wx', 0o600);
    let closed = false;
    return {
      handle,
      path,
      discard: async () => {
        if (!closed) { closed = true; await handle.close().catch(() => undefined); }
        await rm(path, { force: true });
      },
    };
  }

  private async commit(tmp: { handle: FileHandle; path: string }, sha256: string, size: number): Promise<PutResult> {
    const ref = refOf(sha256);
    if (this.fsync) await tmp.handle.datasync();
    await tmp.handle.close();
    const path = this.pathOf(ref);
    await this.ensureDir(dirname(path));
    await rename(tmp.path, path);
    if (this.fsync) await syncDir(dirname(path));
    return { ref, sha256, size, created: true };
  }

  private async ensureDir(dir: string): Promise<void> {
    if (this.made.has(dir)) return;
    const first = await mkdir(dir, { recursive: true, mode: 0o700 });
    // A directory made just now is durable only once its parent is synced (each new level's).
    if (first !== undefined && this.fsync) {
      for (let level = dir; ; level = dirname(level)) {
        await syncDir(dirname(level));
        if (level === first || dirname(level) === level) break;
      }
    }
    this.made.add(dir);
  }

  /** Every failure of the filesystem (full, read-only, gone) means the store cannot take writes now. */
  private async guard<T>(what: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      if (err instanceof BlobStoreUnavailableError) throw err;
      // A directory removed under us (by hand) must not stay cached as made.
      this.made.clear();
      throw new BlobStoreUnavailableError(`blob store ${this.location}: ${what} failed: ${(err as Error).message}`, { cause: err });
    }
  }
}

async function names(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if (isMissing(err)) return [];
    throw err;
  }
}

/** A rename is durable only once its directory is synced. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
