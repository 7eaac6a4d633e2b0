// The file store: objects appended to pack files under a directory, found through an index. A file
// per object cost more than parsing the email it came from (ext4 allocates an inode, and often a
// directory, per object; each needs a sync of its own), so a writer appends each object to its
// current pack (`packs/<writer>-<n>.pack`) and records where it went in `index.sqlite` (node:sqlite,
// WAL): the object's sha256, its pack, offset, size and the time it was last put.
//
// Durability is per batch: a put with `durable: false` only appends; `flush(refs)` syncs the packs
// involved, commits their index rows in one transaction and syncs the index's log. An object is
// visible to readers only once its row is committed, and a row is committed only after its bytes
// are on disk, so no reader (and no entry appended after the flush) finds a row without its data.
// A crash leaves appended bytes no row points at; `compact` (run by `blob gc`) reclaims them.
//
// Putting content that is there already adds no bytes (unless another writer indexed it a moment
// before: then the index keeps one copy, compaction takes the other); it refreshes the row's time
// when that time is older than REFRESH_AFTER_MS: `blob gc` goes by it, so content a new entry
// refers to again is never collected from under it (gc's minimum age is far above that).
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, createReadStream, fdatasync, fsync, ftruncateSync, mkdirSync, openSync, readSync, readdirSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { BlobNotFoundError, BlobStoreUnavailableError } from '../errors.ts';
import { objectPath, refOf, sha256OfRef } from './blob-ref.ts';
import type { BlobContent, BlobStat, BlobStore, PutOptions, PutResult } from './blob-store.ts';

export interface FileStoreOptions {
  dir: string;
  /**
   * Sync each batch's packs and index commit before a flush resolves: without it a power cut may
   * lose objects whose entries Redis kept. @default true
   */
  fsync?: boolean;
}

export const PACK_DIR = 'packs';
export const INDEX_FILE = 'index.sqlite';
/** Each record: 'MSB1', 4 reserved bytes, the content's size (u64 LE), its sha256, then the content. */
export const RECORD_HEADER_BYTES = 48;
const MAGIC = 0x3142534d; // 'MSB1' little-endian
/** A writer starts a new pack past this size... */
const PACK_MAX_BYTES = 256 * 1024 * 1024;
/** ...or this age, so a pack not written for an hour (gc's minimum age) is no writer's current one. */
const PACK_MAX_AGE_MS = 10 * 60_000;
/** Content streamed past this size goes to a pack of its own (other puts go on meanwhile). */
const GATHER_BYTES = 1024 * 1024;
/** How often an open index is checked to still be the one at its path. */
const INDEX_CHECK_MS = 1000;
/** Records are gathered in memory up to this before they are written to their pack. */
const TAIL_BYTES = 1024 * 1024;
/** Content put again refreshes its time only when the time is older than this. */
const REFRESH_AFTER_MS = 10 * 60_000;
/** A pack is rewritten by compaction when less than this share of it is still referenced. */
const COMPACT_BELOW_LIVE = 0.5;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS objects (
  sha256 TEXT PRIMARY KEY,
  pack TEXT NOT NULL,
  offset INTEGER NOT NULL,
  size INTEGER NOT NULL,
  put_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS objects_by_pack ON objects (pack);
CREATE TABLE IF NOT EXISTS packs (name TEXT PRIMARY KEY, created_at INTEGER NOT NULL) WITHOUT ROWID;
`;

interface Pack {
  name: string;
  fd: number;
  size: number;
  openedAt: number;
  /** The packs directory was synced since the pack was made (its name survives a power cut). */
  named: boolean;
  /** Appended objects of this pack not yet in the index. */
  pending: number;
  /** No more appends (rolled over, or a pack of one streamed object). */
  sealed: boolean;
  /** A write or a sync of it failed: none of its unindexed objects may be indexed. */
  failed: boolean;
  /**
   * Records appended and not yet written, from `size - tailBytes` on: small objects reach the file
   * a MiB at a time, and at the latest when a flush names one (nothing reads an unindexed object).
   */
  tail: Buffer | undefined;
  tailBytes: number;
}

/** An object appended and not yet in the index. */
interface Pending { sha256: string; pack: Pack; offset: number; size: number; settled?: boolean }

interface Row { pack: string; offset: number; size: number; put_at: number }

export interface CompactReport { packs: number; bytesFreed: number }

export interface ReindexReport {
  packs: number;
  /** Whole records found, their content checked against the hash in their header. */
  records: number;
  /** Of those, objects the index did not have (rows added). */
  added: number;
  /** Records whose content does not match their header (never indexed). */
  damaged: number;
  /** Packs ending in a partial record (a write cut short): read up to it. */
  cutShort: number;
}

export class FileBlobStore implements BlobStore {
  readonly kind = 'file' as const;
  readonly location: string;
  private readonly dir: string;
  private readonly packDir: string;
  private readonly fsync: boolean;
  private readonly writer = `${process.pid}-${randomBytes(4).toString('hex')}`;
  private packCount = 0;
  private current: Pack | undefined;
  private readonly pending = new Map<string, Pending>();
  private db: DatabaseSync | undefined;
  /** A read transaction is open (see beginReading). */
  private reading = false;
  private dbIno = 0;
  private checkedAt = 0;
  /** The index's write-ahead log, to sync commits through the thread pool. */
  private wal: { fd: number; ino: number } | undefined;
  private statements: ReturnType<FileBlobStore['prepare']> | undefined;

  constructor(options: FileStoreOptions) {
    this.dir = options.dir;
    this.location = options.dir;
    this.packDir = join(options.dir, PACK_DIR);
    this.fsync = options.fsync ?? true;
  }

  async put(content: Uint8Array, options: PutOptions = {}): Promise<PutResult> {
    const sha256 = createHash('sha256').update(content).digest('hex');
    const created = this.guard('write', () => this.store(sha256, content));
    const ref = refOf(sha256);
    if (options.durable !== false) await this.flush([ref]);
    return { ref, sha256, size: content.byteLength, created };
  }

  async putStream(content: BlobContent, options: PutOptions = {}): Promise<PutResult> {
    const iterator = content[Symbol.asyncIterator]();
    const head: Uint8Array[] = [];
    let gathered = 0;
    while (gathered <= GATHER_BYTES) {
      const next = await iterator.next();
      if (next.done) return this.put(head.length === 1 ? head[0]! : Buffer.concat(head), options);
      head.push(next.value);
      gathered += next.value.byteLength;
    }
    // Large: into a pack of its own as it streams (its hash is known only at the end).
    const pack = this.guard('write', () => this.newPack());
    pack.sealed = true;
    const hash = createHash('sha256');
    let size = 0;
    const write = (chunk: Uint8Array) => {
      hash.update(chunk);
      writeAll(pack.fd, chunk, RECORD_HEADER_BYTES + size);
      size += chunk.byteLength;
    };
    try {
      this.guard('write', () => { for (const chunk of head.splice(0)) write(chunk); });
      // The content's own failure (a broken source) is not the store's: it is thrown as it is.
      for (let next = await iterator.next(); !next.done; next = await iterator.next()) this.guard('write', () => write(next.value));
    } catch (err) {
      this.dropPack(pack);
      throw err;
    }
    const sha256 = hash.digest('hex');
    const ref = refOf(sha256);
    const created = this.guard('write', () => {
      if (this.known(sha256)) {
        this.dropPack(pack);
        return false;
      }
      writeAll(pack.fd, recordHeader(sha256, size), 0);
      pack.size = RECORD_HEADER_BYTES + size;
      pack.pending += 1;
      this.pending.set(sha256, { sha256, pack, offset: 0, size });
      return true;
    });
    if (options.durable !== false) await this.flush([ref]);
    return { ref, sha256, size, created };
  }

  /**
   * Syncs the packs of the objects named that this store appended, then indexes them in one
   * transaction. An object not appended here must be in the index already (another writer's, or
   * put before); otherwise the flush fails. A pack that compaction retired in between (only ever
   * one not written for an hour) fails it too: the caller writes its batch again.
   */
  async flush(refs: Iterable<string>): Promise<void> {
    const mine: Pending[] = [];
    const others: string[] = [];
    for (const ref of refs) {
      const sha256 = sha256OfRef(ref);
      if (!sha256) throw new BlobStoreUnavailableError(`blob store ${this.location}: not a blob ref: ${ref}`);
      const pending = this.pending.get(sha256);
      if (pending) mine.push(pending);
      else others.push(sha256);
    }
    if (mine.length > 0) {
      const packs = [...new Set(mine.map((p) => p.pack))];
      try {
        for (const pack of packs) this.writeTail(pack);
        if (this.fsync) {
          await Promise.all(packs.map((pack) => datasync(pack.fd)));
          if (packs.some((pack) => !pack.named)) await syncDir(this.packDir);
        }
      } catch (err) {
        for (const pack of packs) this.failPack(pack);
        throw this.unavailable('sync', err);
      }
      // A pack another flush saw fail while this one waited: Linux reports a failed writeback to
      // one sync only, so this one's success says nothing about the data.
      const failed = packs.find((pack) => pack.failed);
      if (failed) throw new BlobStoreUnavailableError(`blob store ${this.location}: pack ${failed.name} failed a write or a sync`);
      for (const pack of packs) pack.named = true;
      const retired = this.guard('sync', () => this.index(mine));
      if (retired.length > 0) {
        for (const pack of retired) this.failPack(pack);
        throw new BlobStoreUnavailableError(`blob store ${this.location}: pack ${retired[0]!.name} was compacted before its objects were indexed`);
      }
    }
    this.guard('sync', () => {
      for (const sha256 of others) {
        // Indexed meanwhile by a flush of ours that got there first, or by another writer.
        if (!this.stmts().get.get(sha256)) throw new BlobStoreUnavailableError(`blob store ${this.location}: ${refOf(sha256)} was not stored`);
      }
    });
    // Rows found (not only those just written) may be another writer's commit not yet synced.
    try {
      await this.syncIndex();
    } catch (err) {
      throw this.unavailable('sync', err);
    }
  }

  async open(ref: string): Promise<Readable> {
    const sha256 = sha256OfRef(ref);
    if (!sha256) throw new BlobNotFoundError(ref, this.location);
    // Twice: compaction may have moved the object between the look-up and the open.
    for (let attempt = 0; ; attempt++) {
      const row = this.guard('read', () => this.readStmts()?.get.get(sha256) as Row | undefined);
      if (!row) return this.openLoose(ref);
      if (row.size === 0) return Readable.from([]);
      const start = row.offset + RECORD_HEADER_BYTES;
      const stream = createReadStream(join(this.packDir, row.pack), { start, end: start + row.size - 1 });
      const opened = await new Promise<Error | null>((resolve) => {
        stream.once('open', () => resolve(null));
        stream.once('error', resolve);
      });
      if (!opened) return stream;
      if ((opened as NodeJS.ErrnoException).code === 'ENOENT' && attempt === 0) continue;
      throw new BlobStoreUnavailableError(`blob store ${this.location}: ${opened.message}`, { cause: opened });
    }
  }

  /**
   * A blob written before the store kept packs, at its old place (`sha256/<2>/<2>/<hex>`): still
   * read, so an upgraded store delivers what its entries refer to. Only reads see it (stat, list and
   * `blob check` do not): `mailstream blob import <the store's directory>` moves such blobs into packs.
   */
  private async openLoose(ref: string): Promise<Readable> {
    const path = join(this.dir, objectPath(ref));
    if (!this.guard('read', () => statSync(path, { throwIfNoEntry: false })?.isFile())) throw new BlobNotFoundError(ref, this.location);
    return createReadStream(path);
  }

  async stat(ref: string): Promise<BlobStat | null> {
    const sha256 = sha256OfRef(ref);
    if (!sha256) return null;
    const row = this.guard('read', () => this.readStmts()?.get.get(sha256) as Row | undefined);
    return row ? { ref, size: row.size, modifiedAt: new Date(row.put_at) } : null;
  }

  /** Where an object's bytes are: its pack's path and the range in it (for people and tests), or null. */
  locate(ref: string): { path: string; start: number; size: number } | null {
    const sha256 = sha256OfRef(ref);
    const row = sha256 ? this.guard('read', () => this.readStmts()?.get.get(sha256) as Row | undefined) : undefined;
    return row ? { path: join(this.packDir, row.pack), start: row.offset + RECORD_HEADER_BYTES, size: row.size } : null;
  }

  async *list(): AsyncIterable<BlobStat> {
    for (let after = ''; ;) {
      const page = this.guard('read', () => (this.readStmts()?.page.all(after) ?? []) as unknown as Array<{ sha256: string; size: number; put_at: number }>);
      for (const row of page) yield { ref: refOf(row.sha256), size: row.size, modifiedAt: new Date(row.put_at) };
      if (page.length < LIST_PAGE) return;
      after = page[page.length - 1]!.sha256;
    }
  }

  /** Removes an object from the index; its bytes go when `compact` rewrites its pack. */
  async delete(ref: string): Promise<boolean> {
    const sha256 = sha256OfRef(ref);
    if (!sha256) return false;
    return this.guard('write', () => {
      this.endReading();
      return Number(this.stmts().delete.run(sha256).changes) > 0;
    });
  }

  /**
   * Deletes an object only if no put refreshed it since `cutoff`: one statement, so a put that
   * refreshes it either comes first (and the object stays) or finds it gone (and writes it anew).
   */
  async deleteIfOlderThan(ref: string, cutoff: Date): Promise<boolean> {
    const sha256 = sha256OfRef(ref);
    if (!sha256) return false;
    return this.guard('write', () => {
      this.endReading();
      return Number(this.stmts().deleteOld.run(sha256, cutoff.getTime()).changes) > 0;
    });
  }

  /**
   * Reclaims space: every pack not written since `cutoff` (none is a writer's current pack) whose
   * referenced share is below COMPACT_BELOW_LIVE has its live objects copied to a new pack, indexed
   * there, and is removed. Readers holding the old pack open read on; new look-ups find the copy.
   */
  async compact(cutoff: Date, dryRun: boolean): Promise<CompactReport> {
    const report: CompactReport = { packs: 0, bytesFreed: 0 };
    const names = this.guard('read', () => {
      this.stmts();
      return readdirSync(this.packDir).filter((name) => name.endsWith('.pack'));
    });
    for (const name of names) {
      if (this.current?.name === name) continue;
      const path = join(this.packDir, name);
      const info = statSync(path, { throwIfNoEntry: false });
      if (!info || info.mtime >= cutoff) continue;
      const live = this.guard('read', () => this.stmts().inPack.all(name) as unknown as Array<{ sha256: string; offset: number; size: number }>);
      const liveBytes = live.reduce((sum, o) => sum + RECORD_HEADER_BYTES + o.size, 0);
      if (live.length > 0 && liveBytes >= info.size * COMPACT_BELOW_LIVE) continue;
      report.packs += 1;
      report.bytesFreed += info.size - liveBytes;
      if (dryRun) continue;
      const moved: Pending[] = [];
      if (live.length > 0) {
        const fd = openSync(path, 'r');
        try {
          for (const object of live) {
            const content = Buffer.allocUnsafe(object.size);
            // A pack shorter than its index says was damaged outside the store: stop, name it.
            if (!readAll(fd, content, object.offset + RECORD_HEADER_BYTES)) throw new BlobStoreUnavailableError(`blob store ${this.location}: ${name} ends before ${refOf(object.sha256)}: the pack is damaged (mailstream blob reindex rebuilds the index from what is left)`);
            moved.push(this.guard('write', () => this.append(object.sha256, content)));
          }
        } finally {
          closeSync(fd);
        }
        const packs = [...new Set(moved.map((m) => m.pack))];
        for (const pack of packs) this.writeTail(pack);
        if (this.fsync) {
          await Promise.all(packs.map((pack) => datasync(pack.fd)));
          await syncDir(this.packDir);
        }
        for (const pack of packs) pack.named = true;
      }
      this.guard('write', () => this.transaction(() => {
        const stmts = this.stmts();
        for (const m of moved) {
          stmts.move.run(m.pack.name, m.offset, m.sha256, name);
          this.settle(m);
        }
        stmts.retire.run(name);
      }));
      // The rows' move must be durable before the old copies go.
      await this.syncIndex();
      unlinkSync(path);
    }
    return report;
  }

  /**
   * Rebuilds what the index lacks from the packs themselves (each record carries its size and
   * sha256): after the index was lost or damaged (moved aside, a new one is made). Every whole
   * record whose content matches its hash gets a row unless the object has one; each pack is
   * synced before its rows are committed. Records a crash left unflushed become objects too
   * (`blob gc` collects them if no entry refers to them).
   */
  async reindex(): Promise<ReindexReport> {
    const report: ReindexReport = { packs: 0, records: 0, added: 0, damaged: 0, cutShort: 0 };
    const names = this.guard('read', () => {
      this.stmts();
      return readdirSync(this.packDir).filter((name) => name.endsWith('.pack')).sort();
    });
    const header = Buffer.alloc(RECORD_HEADER_BYTES);
    for (const name of names) {
      if (this.current?.name === name) continue;
      const path = join(this.packDir, name);
      const found: Array<{ sha256: string; offset: number; size: number }> = [];
      let putAt = Date.now();
      const fd = openSync(path, 'r');
      try {
        const { size: length, mtimeMs } = statSync(path);
        putAt = Math.floor(mtimeMs);
        report.packs += 1;
        for (let offset = 0; offset < length;) {
          const size = offset + RECORD_HEADER_BYTES <= length && readAll(fd, header, offset) && header.readUInt32LE(0) === MAGIC ? Number(header.readBigUInt64LE(8)) : -1;
          if (size < 0 || offset + RECORD_HEADER_BYTES + size > length) {
            report.cutShort += 1;
            break;
          }
          const sha256 = header.subarray(16, RECORD_HEADER_BYTES).toString('hex');
          const hash = createHash('sha256');
          const chunk = Buffer.allocUnsafe(Math.min(size, 1024 * 1024) || 1);
          for (let at = 0; at < size;) {
            const n = readSync(fd, chunk, 0, Math.min(chunk.length, size - at), offset + RECORD_HEADER_BYTES + at);
            hash.update(chunk.subarray(0, n));
            at += n;
          }
          report.records += 1;
          if (hash.digest('hex') === sha256) found.push({ sha256, offset, size });
          else report.damaged += 1;
          offset += RECORD_HEADER_BYTES + size;
        }
        if (this.fsync) await datasync(fd);
      } finally {
        closeSync(fd);
      }
      this.guard('write', () => this.transaction(() => {
        const stmts = this.stmts();
        if (!stmts.registered.get(name)) stmts.register.run(name, putAt);
        for (const o of found) report.added += Number(stmts.reindex.run(o.sha256, name, o.offset, o.size, putAt).changes);
      }));
    }
    await this.syncIndex();
    return report;
  }

  async probe(): Promise<void> {
    await this.put(new Uint8Array(0));
  }

  /** Objects appended and never flushed stay unindexed (as a crash would leave them). */
  async close(): Promise<void> {
    for (const pending of this.pending.values()) this.closePackIfDone(pending.pack, true);
    if (this.current) this.closePackIfDone(this.current, true);
    this.pending.clear();
    this.current = undefined;
    this.endReading();
    this.db?.close();
    this.db = undefined;
    if (this.wal) closeSync(this.wal.fd);
    this.wal = undefined;
    this.statements = undefined;
  }

  /** Appends content unless the store has it; true when appended. */
  private store(sha256: string, content: Uint8Array): boolean {
    if (this.known(sha256)) return false;
    const pending = this.append(sha256, content);
    this.pending.set(sha256, pending);
    return true;
  }

  /** Content this store appended and not yet flushed, or indexed (its time refreshed when old). */
  private known(sha256: string): boolean {
    if (this.pending.has(sha256)) return true;
    const stmts = this.stmts();
    this.beginReading();
    const row = stmts.get.get(sha256) as Row | undefined;
    if (!row) return false;
    const now = Date.now();
    if (now - row.put_at <= REFRESH_AFTER_MS) return true;
    // gc deletes only rows older than its cutoff, in one statement with that condition: if the
    // refresh finds the row gone, gc took it just now and the content is written anew.
    this.endReading();
    return Number(stmts.refresh.run(now, sha256).changes) > 0;
  }

  /**
   * Look-ups share one read transaction until the event loop turns: SQLite takes and drops file
   * locks for each transaction, which cost more than a look-up itself. A row committed meanwhile
   * by another writer may be missed; the content is then appended once more, and the index keeps
   * the first copy (compaction takes the other).
   */
  private beginReading(): void {
    if (this.reading) return;
    this.database().exec('BEGIN');
    this.reading = true;
    setImmediate(() => this.endReading());
  }

  private endReading(): void {
    if (!this.reading) return;
    this.reading = false;
    try {
      this.db?.exec('COMMIT');
    } catch {
      // the connection went (closed, or reopened): its transaction with it
    }
  }

  private append(sha256: string, content: Uint8Array): Pending {
    const pack = this.writablePack(content.byteLength);
    const offset = pack.size;
    const bytes = RECORD_HEADER_BYTES + content.byteLength;
    try {
      if (pack.tailBytes + bytes > TAIL_BYTES) this.writeTail(pack);
      if (bytes > TAIL_BYTES) {
        writeAll(pack.fd, recordHeader(sha256, content.byteLength), offset);
        writeAll(pack.fd, content, offset + RECORD_HEADER_BYTES);
      } else {
        pack.tail ??= Buffer.allocUnsafe(TAIL_BYTES);
        writeHeader(pack.tail, pack.tailBytes, sha256, content.byteLength);
        pack.tail.set(content, pack.tailBytes + RECORD_HEADER_BYTES);
        pack.tailBytes += bytes;
      }
    } catch (err) {
      // Whatever of the record got there is never indexed; the next put starts a new pack.
      this.failPack(pack);
      throw err;
    }
    pack.size = offset + RECORD_HEADER_BYTES + content.byteLength;
    pack.pending += 1;
    return { sha256, pack, offset, size: content.byteLength };
  }

  /** Writes the records gathered in memory to the pack. */
  private writeTail(pack: Pack): void {
    if (pack.tailBytes === 0) return;
    writeAll(pack.fd, pack.tail!.subarray(0, pack.tailBytes), pack.size - pack.tailBytes);
    pack.tailBytes = 0;
  }

  private writablePack(adding: number): Pack {
    const current = this.current;
    if (current && !current.sealed && current.size + adding <= PACK_MAX_BYTES && Date.now() - current.openedAt < PACK_MAX_AGE_MS) return current;
    if (current) {
      current.sealed = true;
      this.closePackIfDone(current);
    }
    this.current = this.newPack();
    return this.current;
  }

  /** A new pack, registered in the index first (compaction removes only registered packs it retires). */
  private newPack(): Pack {
    const name = `${this.writer}-${this.packCount++}.pack`;
    this.endReading();
    this.stmts().register.run(name, Date.now());
    const fd = openSync(join(this.packDir, name), 'wx', 0o600);
    return { name, fd, size: 0, openedAt: Date.now(), named: false, pending: 0, sealed: false, failed: false, tail: undefined, tailBytes: 0 };
  }

  /**
   * Indexes flushed objects in one transaction. Indexes none and answers the packs when one of them
   * was retired meanwhile (compacted as garbage: not written for an hour, its objects never indexed).
   */
  private index(objects: Pending[]): Pack[] {
    const now = Date.now();
    const stmts = this.stmts();
    const retired: Pack[] = [];
    this.transaction(() => {
      for (const pack of new Set(objects.map((o) => o.pack))) if (!stmts.registered.get(pack.name)) retired.push(pack);
      if (retired.length === 0) for (const o of objects) stmts.insert.run(o.sha256, o.pack.name, o.offset, o.size, now);
    });
    if (retired.length === 0) for (const o of objects) this.settle(o);
    return retired;
  }

  /** Once per object, however many flushes named it. */
  private settle(object: Pending): void {
    if (object.settled) return;
    object.settled = true;
    if (this.pending.get(object.sha256) === object) this.pending.delete(object.sha256);
    object.pack.pending -= 1;
    this.closePackIfDone(object.pack);
  }

  private closePackIfDone(pack: Pack, force = false): void {
    if (pack.fd < 0 || (!force && (!pack.sealed || pack.pending > 0))) return;
    pack.tail = undefined;
    pack.tailBytes = 0;
    try {
      closeSync(pack.fd);
    } catch {
      // closing is all that is left to do with it
    }
    pack.fd = -1;
  }

  /** A pack that failed a write or a sync: its unindexed objects are forgotten (a later put writes them anew). */
  private failPack(pack: Pack): void {
    pack.sealed = true;
    pack.failed = true;
    for (const [sha256, pending] of this.pending) {
      if (pending.pack !== pack) continue;
      pending.settled = true;
      this.pending.delete(sha256);
    }
    pack.pending = 0;
    if (this.current === pack) this.current = undefined;
    this.closePackIfDone(pack, true);
  }

  /** A streamed object's own pack whose content was there already. */
  private dropPack(pack: Pack): void {
    try {
      ftruncateSync(pack.fd, 0);
    } catch {
      // removed below in any case
    }
    this.closePackIfDone(pack, true);
    try {
      unlinkSync(join(this.packDir, pack.name));
      this.endReading();
      this.stmts().retire.run(pack.name);
    } catch {
      // an empty pack left behind is removed by compaction
    }
  }

  private transaction(work: () => void): void {
    this.endReading();
    const db = this.database();
    db.exec('BEGIN IMMEDIATE');
    try {
      work();
      db.exec('COMMIT');
    } catch (err) {
      db.exec('ROLLBACK');
      throw err;
    }
  }

  /**
   * Makes the index's commits durable. SQLite does not sync them itself (synchronous=NORMAL): its
   * sync would hold the writing thread for a disk round trip per batch; this one waits in the
   * thread pool instead. Without a log file everything is in the database file, which SQLite
   * syncs when it moves the log there (a checkpoint).
   */
  private async syncIndex(): Promise<void> {
    if (!this.fsync || !this.db) return;
    const path = join(this.dir, `${INDEX_FILE}-wal`);
    const info = statSync(path, { throwIfNoEntry: false });
    if (!info) return;
    if (this.wal?.ino !== info.ino) {
      if (this.wal) closeSync(this.wal.fd);
      this.wal = { fd: openSync(path, 'r'), ino: info.ino };
    }
    await datasync(this.wal.fd);
  }

  /**
   * The index, opened on first use. It is checked to still be the file at its path (for reads each
   * time, for writes once a second): a store whose directory went (a lost mount, a directory
   * removed) must fail, not answer from an index no one else sees any more.
   */
  private database(read: true): DatabaseSync | undefined;
  private database(read?: false): DatabaseSync;
  private database(read = false): DatabaseSync | undefined {
    const path = join(this.dir, INDEX_FILE);
    if (this.db) {
      const now = Date.now();
      if (!read && now - this.checkedAt < INDEX_CHECK_MS) return this.db;
      this.checkedAt = now;
      const at = statSync(path, { throwIfNoEntry: false });
      if (at?.ino === this.dbIno) return this.db;
      this.endReading();
      this.db.close();
      this.db = undefined;
      this.statements = undefined;
      if (read && !at) return undefined;
    }
    // A reader creates nothing: no index is an empty store (or one not mounted), not a new one;
    // but a store path that is no directory does not answer at all.
    if (read && !statSync(path, { throwIfNoEntry: false })) {
      if (statSync(this.dir, { throwIfNoEntry: false })?.isDirectory() === false) throw new Error(`ENOTDIR: not a directory, ${this.dir}`);
      return undefined;
    }
    mkdirSync(this.packDir, { recursive: true, mode: 0o700 });
    const db = new DatabaseSync(join(this.dir, INDEX_FILE));
    try {
      // Writers on other threads and processes take turns. A commit is synced by `syncIndex`, so an
      // indexed object survives a power cut (its pack was synced before).
      db.exec(`PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = ${this.fsync ? 'NORMAL' : 'OFF'};`);
      db.exec(SCHEMA);
    } catch (err) {
      db.close();
      throw err;
    }
    this.db = db;
    this.dbIno = statSync(join(this.dir, INDEX_FILE)).ino;
    this.checkedAt = Date.now();
    return db;
  }

  private prepare(db: DatabaseSync) {
    const s = (sql: string): StatementSync => db.prepare(sql);
    return {
      get: s('SELECT pack, offset, size, put_at FROM objects WHERE sha256 = ?'),
      insert: s('INSERT INTO objects (sha256, pack, offset, size, put_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (sha256) DO UPDATE SET put_at = excluded.put_at'),
      refresh: s('UPDATE objects SET put_at = ? WHERE sha256 = ?'),
      delete: s('DELETE FROM objects WHERE sha256 = ?'),
      deleteOld: s('DELETE FROM objects WHERE sha256 = ? AND put_at < ?'),
      page: s(`SELECT sha256, size, put_at FROM objects WHERE sha256 > ? ORDER BY sha256 LIMIT ${LIST_PAGE}`),
      inPack: s('SELECT sha256, offset, size FROM objects WHERE pack = ? ORDER BY offset'),
      move: s('UPDATE objects SET pack = ?, offset = ? WHERE sha256 = ? AND pack = ?'),
      register: s('INSERT INTO packs (name, created_at) VALUES (?, ?)'),
      reindex: s('INSERT INTO objects (sha256, pack, offset, size, put_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING'),
      registered: s('SELECT 1 FROM packs WHERE name = ?'),
      retire: s('DELETE FROM packs WHERE name = ?'),
    };
  }

  private stmts(): ReturnType<FileBlobStore['prepare']> {
    const db = this.database();
    this.statements ??= this.prepare(db);
    return this.statements;
  }

  /** For reads: undefined while there is no index (nothing was ever stored, or the directory is gone). */
  private readStmts(): ReturnType<FileBlobStore['prepare']> | undefined {
    const db = this.database(true);
    if (!db) return undefined;
    this.statements ??= this.prepare(db);
    return this.statements;
  }

  /** Every failure of the filesystem or the index (full, read-only, gone, locked) means the store cannot take work now. */
  private guard<T>(what: string, work: () => T): T {
    try {
      return work();
    } catch (err) {
      if (err instanceof BlobStoreUnavailableError) throw err;
      throw this.unavailable(what, err);
    }
  }

  private unavailable(what: string, err: unknown): BlobStoreUnavailableError {
    return new BlobStoreUnavailableError(`blob store ${this.location}: ${what} failed: ${(err as Error).message}`, { cause: err });
  }
}

const LIST_PAGE = 1000;

function recordHeader(sha256: string, size: number): Buffer {
  const header = Buffer.alloc(RECORD_HEADER_BYTES);
  writeHeader(header, 0, sha256, size);
  return header;
}

function writeHeader(target: Buffer, at: number, sha256: string, size: number): void {
  target.writeUInt32LE(MAGIC, at);
  target.writeUInt32LE(0, at + 4);
  target.writeBigUInt64LE(BigInt(size), at + 8);
  target.write(sha256, at + 16, 'hex');
}

/** Fills `target` from `position`; false at the end of the file. */
function readAll(fd: number, target: Buffer, position: number): boolean {
  for (let at = 0; at < target.length;) {
    const n = readSync(fd, target, at, target.length - at, position + at);
    if (n === 0) return false;
    at += n;
  }
  return true;
}

function writeAll(fd: number, content: Uint8Array, position: number): void {
  for (let at = 0; at < content.byteLength;) at += writeSync(fd, content, at, content.byteLength - at, position + at);
}

/** The one call per batch that waits on the disk goes through the thread pool. */
function datasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

/** A new pack's name is durable once its directory is synced. */
async function syncDir(dir: string): Promise<void> {
  const fd = openSync(dir, 'r');
  try {
    await new Promise<void>((resolve, reject) => fsync(fd, (err) => (err ? reject(err) : resolve())));
  } finally {
    closeSync(fd);
  }
}

/** The bytes every pack of a store takes on disk (objects, their headers and garbage). */
export function packBytes(dir: string): number {
  let total = 0;
  for (const name of readdirSync(join(dir, PACK_DIR))) {
    if (name.endsWith('.pack')) total += statSync(join(dir, PACK_DIR, name), { throwIfNoEntry: false })?.size ?? 0;
  }
  return total;
}
