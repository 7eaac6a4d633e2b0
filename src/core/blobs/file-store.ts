// The file store: one file per object under a directory, at the object's content address. A put
// writes a temporary file (beside the object's path when its hash is known), syncs its data, and
// only then renames it into place, so an object is either whole or absent; a crash leaves at most a
// temporary file (swept by `blob gc`). The rename is durable once its directory is synced. A
// durable put does all of that before it resolves. A put with `durable: false` resolves once the
// content is written and goes on syncing and renaming in the background; `flush` waits for those
// and syncs each directory involved once, so a batch's objects become durable together and the
// writer never waits on the disk one object at a time. Putting content that is there already only
// refreshes the file's time: `blob gc` goes by that time, so a blob that a new entry refers to again
// is never collected from under it.
// Everything but the syncs is a synchronous call on the writing thread (the producer's parse
// threads): looking, making directories, opening, writing into the page cache and renaming do not
// wait on the disk, and a round trip through the thread pool costs more CPU than each of them. Only
// fdatasync and a directory's fsync go through the pool, where they overlap with the parsing.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, createReadStream, fdatasync, fsync, mkdirSync, openSync, renameSync, rmSync, statSync, utimesSync, writeSync } from 'node:fs';
import { readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { BlobNotFoundError, BlobStoreUnavailableError } from '../errors.ts';
import { objectPath, refOf, refOfPath } from './blob-ref.ts';
import type { BlobContent, BlobStat, BlobStore, PutOptions, PutResult } from './blob-store.ts';

export interface FileStoreOptions {
  dir: string;
  /**
   * fsync each object and its directory before a put resolves: without it a power cut may lose
   * objects whose entries Redis kept. @default true
   */
  fsync?: boolean;
}

/** Temporary files of streamed content (writes under way, or left by a crash) live here. */
export const TMP_DIR = 'tmp';
/** Temporary files of content whose hash is known up front sit beside their final path, named so. */
export const TMP_PREFIX = '.tmp-';
/**
 * Streamed content up to this size is gathered in memory and stored like content held whole: its
 * temporary file goes in its final directory, and a rename within one directory is far cheaper
 * than one across two (Linux serialises those filesystem-wide). Most mail and attachments fit.
 */
const GATHER_BYTES = 1024 * 1024;

const isMissing = (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT';

/** An object written whose rename is not yet known durable. */
interface Unsynced {
  /** Settles once the object is at its path, its data synced first; rejects when it never will be. */
  placed: Promise<void>;
  /** Directories whose sync makes the object durable. */
  dirs: readonly string[];
}

export class FileBlobStore implements BlobStore {
  readonly kind = 'file' as const;
  readonly location: string;
  private readonly dir: string;
  private readonly fsync: boolean;
  /** Directories known to exist; each with the directories that making it changed (to be synced). */
  private readonly made = new Map<string, string[]>();
  /** Objects put and not yet flushed, by ref. */
  private readonly unsynced = new Map<string, Unsynced>();
  /** Temporary files are named by this store's prefix and a count (cheaper than random bytes each). */
  private readonly tmpPrefix = `${TMP_PREFIX}${process.pid}-${randomBytes(4).toString('hex')}-`;
  private tmpCount = 0;

  constructor(options: FileStoreOptions) {
    this.dir = options.dir;
    this.location = options.dir;
    this.fsync = options.fsync ?? true;
  }

  pathOf(ref: string): string {
    return join(this.dir, objectPath(ref));
  }

  async put(content: Uint8Array, options: PutOptions = {}): Promise<PutResult> {
    const sha256 = createHash('sha256').update(content).digest('hex');
    const ref = refOf(sha256);
    const size = content.byteLength;
    const created = await this.guard('write', async () => {
      if (this.unsynced.has(ref) || this.refresh(ref)) return false;
      const path = this.pathOf(ref);
      const changed = this.ensureDir(dirname(path));
      const tmp = this.tempFile(dirname(path));
      try {
        tmp.write(content);
      } catch (err) {
        tmp.discard();
        throw err;
      }
      this.track(ref, this.place(tmp, path), [dirname(path), ...changed]);
      return true;
    });
    if (options.durable !== false) await this.flush([ref]);
    return { ref, sha256, size, created };
  }

  async putStream(content: BlobContent, options: PutOptions = {}): Promise<PutResult> {
    const result = await this.guard('write', async () => {
      const iterator = content[Symbol.asyncIterator]();
      const head: Uint8Array[] = [];
      let gathered = 0;
      while (gathered <= GATHER_BYTES) {
        const next = await iterator.next();
        if (next.done) return this.put(head.length === 1 ? head[0]! : Buffer.concat(head), { durable: false });
        head.push(next.value);
        gathered += next.value.byteLength;
      }
      const tmp = this.tempFile(join(this.dir, TMP_DIR));
      try {
        const hash = createHash('sha256');
        let size = 0;
        const write = (chunk: Uint8Array) => {
          hash.update(chunk);
          size += chunk.byteLength;
          tmp.write(chunk);
        };
        for (const chunk of head.splice(0)) write(chunk);
        for (let next = await iterator.next(); !next.done; next = await iterator.next()) write(next.value);
        const sha256 = hash.digest('hex');
        const ref = refOf(sha256);
        if (this.unsynced.has(ref) || this.refresh(ref)) {
          tmp.discard();
          return { ref, sha256, size, created: false };
        }
        const path = this.pathOf(ref);
        const changed = this.ensureDir(dirname(path));
        this.track(ref, this.place(tmp, path), [dirname(path), ...changed]);
        return { ref, sha256, size, created: true };
      } catch (err) {
        tmp.discard();
        throw err;
      }
    });
    if (options.durable !== false) await this.flush([result.ref]);
    return result;
  }

  /**
   * Waits until each object is in place, then syncs every directory involved, each once. An
   * object that is neither being written here nor flushed before must be on disk (another process
   * may have written it); its directories are synced too, as its writer may not have got that far.
   */
  async flush(refs: Iterable<string>): Promise<void> {
    const flushed = new Map<string, Unsynced | undefined>();
    for (const ref of refs) flushed.set(ref, this.unsynced.get(ref));
    await this.guard('sync', async () => {
      const dirs = new Set<string>();
      await Promise.all([...flushed].map(async ([ref, unsynced]) => {
        if (unsynced) {
          await unsynced.placed;
          for (const dir of unsynced.dirs) dirs.add(dir);
        } else if (await this.stat(ref)) {
          for (const dir of this.directoriesOf(ref)) dirs.add(dir);
        } else {
          throw new BlobStoreUnavailableError(`blob store ${this.location}: ${ref} was not stored`);
        }
      }));
      if (this.fsync) await Promise.all([...dirs].map(syncDir));
    });
    for (const [ref, unsynced] of flushed) if (unsynced && this.unsynced.get(ref) === unsynced) this.unsynced.delete(ref);
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
    this.ensureDir(dirname(aside));
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
    const root = join(this.dir, 'sha256');
    const dirs = [join(this.dir, TMP_DIR)];
    for (const a of await names(root)) for (const b of await names(join(root, a))) dirs.push(join(root, a, b));
    let removed = 0;
    for (const dir of dirs) {
      for (const name of await names(dir)) {
        if (dir !== dirs[0] && !name.startsWith(TMP_PREFIX)) continue;
        const path = join(dir, name);
        const s = await stat(path).catch(() => null);
        if (!s || s.mtime >= cutoff) continue;
        if (!dryRun) await rm(path, { force: true });
        removed += 1;
      }
    }
    return removed;
  }

  async probe(): Promise<void> {
    await this.put(new Uint8Array(0));
  }

  /** Waits for writes under way; objects never flushed stay as they are (a crash could leave them too). */
  async close(): Promise<void> {
    await Promise.allSettled([...this.unsynced.values()].map((u) => u.placed));
  }

  /**
   * An existing object gets a fresh time (see the file's header); false when there is none. Most
   * content is new: a look that finds nothing is answered at once from the directory cache, without
   * a round trip through the thread pool or an error object for ENOENT.
   */
  private refresh(ref: string): boolean {
    const path = this.pathOf(ref);
    if (!statSync(path, { throwIfNoEntry: false })) return false;
    const now = new Date();
    try {
      utimesSync(path, now, now);
      return true;
    } catch (err) {
      if (isMissing(err)) return false;
      throw err;
    }
  }

  /** The directories an object's path depends on: its own (sha256/<2>/<2>), the two above, the store's. */
  private directoriesOf(ref: string): string[] {
    const own = dirname(this.pathOf(ref));
    return [own, dirname(own), dirname(dirname(own)), this.dir];
  }

  private track(ref: string, placed: Promise<void>, dirs: readonly string[]): void {
    const unsynced: Unsynced = { placed, dirs };
    this.unsynced.set(ref, unsynced);
    // A failure is reported by the flush that waits for it; a later put of the content tries again.
    placed.catch(() => { if (this.unsynced.get(ref) === unsynced) this.unsynced.delete(ref); });
  }

  /** Data first, then the name: a rename that survives a crash never points at unwritten data. */
  private async place(tmp: TempFile, path: string): Promise<void> {
    try {
      if (this.fsync) await tmp.datasync();
      tmp.close();
      renameSync(tmp.path, path);
    } catch (err) {
      this.made.clear();
      tmp.discard();
      throw err;
    }
  }

  private tempFile(dir: string): TempFile {
    this.ensureDir(dir);
    const path = join(dir, `${this.tmpPrefix}${this.tmpCount++}`);
    return new TempFile(openSync(path, 'wx', 0o600), path);
  }

  /**
   * Makes a directory (and what is missing above it) once per store; returns the directories whose
   * entries changed on the way, which must be synced for it to survive a power cut. Most exist
   * already: one stat, answered from the kernel's directory cache, says so.
   */
  private ensureDir(dir: string): string[] {
    const known = this.made.get(dir);
    if (known) return known;
    const changed: string[] = [];
    if (!statSync(dir, { throwIfNoEntry: false })?.isDirectory()) {
      const first = mkdirSync(dir, { recursive: true, mode: 0o700 });
      if (first !== undefined) {
        for (let level = dir; ; level = dirname(level)) {
          changed.push(dirname(level));
          if (level === first || dirname(level) === level) break;
        }
      }
    }
    this.made.set(dir, changed);
    return changed;
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

/**
 * A temporary file by its descriptor. Each asynchronous call is a round trip through the thread
 * pool (tens of microseconds of CPU here, more than the call itself for small files), so only the
 * data sync, which waits on the disk, is one.
 */
class TempFile {
  readonly path: string;
  private readonly fd: number;
  private closed = false;

  constructor(fd: number, path: string) {
    this.fd = fd;
    this.path = path;
  }

  write(content: Uint8Array): void {
    for (let at = 0; at < content.byteLength;) at += writeSync(this.fd, content, at, content.byteLength - at);
  }

  datasync(): Promise<void> {
    return call((done) => fdatasync(this.fd, done));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }

  discard(): void {
    try {
      this.close();
    } catch {
      // already unusable; the file goes anyway
    }
    rmSync(this.path, { force: true });
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

/** A node-style call as a promise. */
function call<T = void>(start: (done: (err: NodeJS.ErrnoException | null, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => start((err, value) => (err ? reject(err) : resolve(value as T))));
}

/**
 * A rename is durable only once its directory is synced. Opening and closing a directory just
 * written in does not wait on the disk: only the sync goes through the thread pool.
 */
async function syncDir(dir: string): Promise<void> {
  const fd = openSync(dir, 'r');
  try {
    await call((done) => fsync(fd, done));
  } finally {
    closeSync(fd);
  }
}
