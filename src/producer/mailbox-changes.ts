// TRACK_CHANGES for one mailbox: what happened to messages already ingested. With CONDSTORE the
// server tells what changed since the MODSEQ cursor kept in the mailbox state (a UID FETCH
// CHANGEDSINCE over the ingested UIDs), and with QRESYNC which UIDs vanished in the same answer;
// without them a scan every TRACK_CHANGES_SCAN_MS compares every UID's flags, and the UID list,
// with what the uid hash remembers. Each difference becomes an event, appended together with the
// new cursor in one script (appendChanges), so a crash anywhere repeats a look, never an event.
import type { FetchMessageObject, ImapFlow } from 'imapflow';
import type { AccountContext } from './mailbox-context.ts';
import type { OpenedMailbox } from './mailbox-position.ts';
import {
  deletedEvent, isTrackedChange, maxModseq, normalFlags, normalLabels, parseUidRecord, tracksAnything, uidRecord, updatedEvent,
  type Location, type SeenMessage,
} from './change-events.ts';
import { appendChanges, type ChangeBatch, type UidChange } from './stream-append.ts';

/** UIDs looked up in the uid hash per command, and changes appended per script call. */
const CHUNK = 500;

/** A difference found, before it is numbered into an event (scans number events by their batch). */
interface Found {
  uid: number;
  before: SeenMessage;
  /** null: the UID is gone. */
  now: SeenMessage | null;
  modseq: string | null;
}

export interface ChangeCheck {
  updated: number;
  deleted: number;
  /** Whether this look was a full scan (no CONDSTORE or no QRESYNC). */
  scanned: boolean;
}

interface Capabilities { gmail: boolean; condstore: boolean; qresync: boolean }

function capabilitiesOf(client: ImapFlow): Capabilities {
  const box = client.mailbox || undefined;
  return {
    gmail: client.capabilities.has('X-GM-EXT-1'),
    condstore: client.enabled.has('CONDSTORE') && !!box?.highestModseq && !box.noModseq,
    qresync: client.enabled.has('QRESYNC'),
  };
}

export class ChangeTracker {
  private readonly ctx: AccountContext;
  private readonly mailbox: string;
  private readonly labels: { account: string; mailbox: string };
  private lastScanAt = 0;

  constructor(ctx: AccountContext, mailbox: string) {
    this.ctx = ctx;
    this.mailbox = mailbox;
    this.labels = { account: ctx.keys.account, mailbox };
    if (this.enabled) {
      for (const type of ['updated', 'moved', 'deleted']) ctx.metrics.changeEvents.inc({ ...this.labels, type }, 0);
      for (const how of ['condstore', 'scan']) ctx.metrics.changeChecks.inc({ ...this.labels, how }, 0);
    }
  }

  get enabled(): boolean {
    return tracksAnything(this.ctx.settings.changes) && !this.ctx.readOnly;
  }

  /** Whether this session needs scans (the server lacks CONDSTORE or QRESYNC for what is tracked). */
  needsScans(client: ImapFlow): boolean {
    if (!this.enabled) return false;
    const caps = capabilitiesOf(client);
    return !caps.qresync || (!caps.condstore && this.tracksAttributes(caps));
  }

  /** How long until the next scan is due, for the wait between looks. */
  scanDueIn(client: ImapFlow, now = Date.now()): number {
    if (!this.needsScans(client)) return Number.POSITIVE_INFINITY;
    return Math.max(0, this.lastScanAt + this.ctx.settings.changes.scanIntervalMs - now);
  }

  private tracksAttributes(caps: Capabilities): boolean {
    const track = this.ctx.settings.changes;
    return track.flags || (track.labels && caps.gmail);
  }

  /** One look at the mailbox for changes to the UIDs up to `lastUid` (those already ingested). */
  async check(client: ImapFlow, box: OpenedMailbox, lastUid: number, fencingToken: string, onResponse: () => void): Promise<ChangeCheck> {
    const result: ChangeCheck = { updated: 0, deleted: 0, scanned: false };
    if (!this.enabled) return result;
    const caps = capabilitiesOf(client);
    const state = await this.ctx.redis.hmget(this.ctx.keys.mailbox(this.mailbox), 'highestModseq', 'scanSeq');
    const at = (uid: number): Location => ({ account: this.ctx.keys.account, mailbox: this.mailbox, uidValidity: box.uidValidity, uid });
    const attributes = this.tracksAttributes(caps);

    if (caps.condstore) {
      const cursor = state[0];
      const opened = String(client.mailbox ? client.mailbox.highestModseq ?? '' : '');
      if (!cursor) {
        // Tracking starts now: what was ingested before was recorded as it was fetched.
        await this.apply(box, fencingToken, { field: 'highestModseq', expected: null, next: opened }, []);
        return result;
      }
      if (lastUid > 0) {
        const { found, next } = await this.changedSince(client, lastUid, cursor, caps, onResponse);
        this.ctx.metrics.changeChecks.inc({ ...this.labels, how: 'condstore' });
        this.ctx.fault.hit('after-change-fetch');
        const newCursor = maxModseq(maxModseq(cursor, opened), next)!;
        // A server that leaves MODSEQ out of an answer: the look's own cursor still tells this change from the next.
        const changes = found.map((f) => this.toChange(f, at(f.uid), { modseq: f.modseq ?? newCursor }));
        await this.applyInChunks(box, fencingToken, { field: 'highestModseq', expected: cursor, next: newCursor }, changes);
        this.count(result, found);
      }
    }
    const scanDue = this.scanDueIn(client) === 0;
    if (scanDue && lastUid > 0) {
      this.lastScanAt = Date.now();
      const found = await this.scan(client, lastUid, { attributes: attributes && !caps.condstore, uids: !caps.qresync, gmail: caps.gmail }, onResponse);
      this.ctx.metrics.changeChecks.inc({ ...this.labels, how: 'scan' });
      this.ctx.fault.hit('after-change-fetch');
      const seq = Number(state[1] ?? 0);
      for (let i = 0, n = 0; i < found.length; i += CHUNK, n++) {
        const part = found.slice(i, i + CHUNK);
        const scan = seq + n + 1;
        const changes = part.map((f) => this.toChange(f, at(f.uid), { scan }));
        await this.apply(box, fencingToken, { field: 'scanSeq', expected: seq + n === 0 && state[1] === null ? null : String(seq + n), next: String(scan) }, changes);
      }
      this.count(result, found);
      result.scanned = true;
    }
    return result;
  }

  private count(result: ChangeCheck, found: readonly Found[]): void {
    for (const f of found) {
      if (f.now === null) result.deleted += this.ctx.settings.changes.deletes ? 1 : 0;
      else if (isTrackedChange(f.before, f.now, this.ctx.settings.changes)) result.updated += 1;
    }
  }

  /** The record and event of a difference; an untracked difference (a label without TRACK_CHANGES=labels) only updates the record. */
  private toChange(found: Found, at: Location, version: { modseq: string } | { scan: number }): UidChange {
    const observedAt = new Date().toISOString();
    if (found.now === null) {
      return { uid: found.uid, record: null, ...(this.ctx.settings.changes.deletes ? { event: deletedEvent(at, found.before.key, observedAt) } : {}) };
    }
    const tracked = isTrackedChange(found.before, found.now, this.ctx.settings.changes);
    return { uid: found.uid, record: uidRecord(found.now), ...(tracked ? { event: updatedEvent(at, found.now, version, observedAt) } : {}) };
  }

  /** What CONDSTORE (and QRESYNC's VANISHED) report since the cursor, compared with the uid hash. */
  private async changedSince(client: ImapFlow, lastUid: number, cursor: string, caps: Capabilities, onResponse: () => void): Promise<{ found: Found[]; next: string | null }> {
    const changed: FetchMessageObject[] = [];
    const vanished = new Set<number>();
    const onExpunge = (event: { uid?: number; vanished?: boolean }) => { if (event.vanished && event.uid) vanished.add(event.uid); };
    client.on('expunge', onExpunge);
    let next: string | null = null;
    try {
      for await (const msg of client.fetch(`1:${lastUid}`, { uid: true, flags: true, ...(caps.gmail ? { labels: true } : {}) }, { uid: true, changedSince: BigInt(cursor) })) {
        if (msg.uid > lastUid) continue;
        changed.push(msg);
        if (msg.modseq !== undefined) next = maxModseq(next, String(msg.modseq));
      }
    } finally {
      client.off('expunge', onExpunge);
    }
    onResponse();
    const found: Found[] = [];
    const records = await this.records([...changed.map((m) => m.uid), ...vanished]);
    for (const msg of changed) {
      const before = records.get(msg.uid);
      if (!before || vanished.has(msg.uid)) continue;
      const now: SeenMessage = { key: before.key, flags: normalFlags(msg.flags ?? []), labels: caps.gmail ? normalLabels(msg.labels) : before.labels };
      if (uidRecord(now) !== uidRecord(before)) found.push({ uid: msg.uid, before, now, modseq: msg.modseq === undefined ? null : String(msg.modseq) });
    }
    for (const uid of [...vanished].sort((a, b) => a - b)) {
      const before = records.get(uid);
      if (before) found.push({ uid, before, now: null, modseq: null });
    }
    return { found, next };
  }

  /** A full look: every ingested UID's flags (when CONDSTORE cannot tell) and the UID list (when QRESYNC cannot). */
  private async scan(client: ImapFlow, lastUid: number, what: { attributes: boolean; uids: boolean; gmail: boolean }, onResponse: () => void): Promise<Found[]> {
    const found: Found[] = [];
    const present = new Set<number>();
    let pending: FetchMessageObject[] = [];
    const compare = async (messages: FetchMessageObject[]) => {
      const records = await this.records(messages.map((m) => m.uid));
      for (const msg of messages) {
        const before = records.get(msg.uid);
        if (!before) continue;
        const now: SeenMessage = { key: before.key, flags: normalFlags(msg.flags ?? []), labels: what.gmail ? normalLabels(msg.labels) : before.labels };
        if (uidRecord(now) !== uidRecord(before)) found.push({ uid: msg.uid, before, now, modseq: null });
      }
    };
    const query = what.attributes ? { uid: true, flags: true, ...(what.gmail ? { labels: true } : {}) } : { uid: true };
    for await (const msg of client.fetch(`1:${lastUid}`, query, { uid: true })) {
      if (msg.uid > lastUid) continue;
      present.add(msg.uid);
      if (!what.attributes) continue;
      pending.push(msg);
      if (pending.length >= CHUNK) { await compare(pending); pending = []; }
    }
    if (pending.length > 0) await compare(pending);
    onResponse();
    if (what.uids) found.push(...await this.gone(present, lastUid));
    return found;
  }

  /** UIDs the hash remembers that the server no longer lists. */
  private async gone(present: ReadonlySet<number>, lastUid: number): Promise<Found[]> {
    const found: Found[] = [];
    let cursor = '0';
    do {
      const [nextCursor, pairs] = await this.ctx.redis.hscan(this.ctx.keys.uids(this.mailbox), cursor, 'COUNT', 1000);
      cursor = nextCursor;
      for (let i = 0; i + 1 < pairs.length; i += 2) {
        const uid = Number(pairs[i]);
        const before = parseUidRecord(pairs[i + 1]);
        if (before && uid <= lastUid && !present.has(uid)) found.push({ uid, before, now: null, modseq: null });
      }
    } while (cursor !== '0');
    return found.sort((a, b) => a.uid - b.uid);
  }

  private async records(uids: readonly number[]): Promise<Map<number, SeenMessage>> {
    const out = new Map<number, SeenMessage>();
    for (let i = 0; i < uids.length; i += CHUNK) {
      const part = uids.slice(i, i + CHUNK);
      const raw = await this.ctx.redis.hmget(this.ctx.keys.uids(this.mailbox), ...part.map(String));
      part.forEach((uid, j) => {
        const seen = parseUidRecord(raw[j]);
        if (seen) out.set(uid, seen);
      });
    }
    return out;
  }

  /** Big answers go in several scripts; the cursor moves with the last, so a crash between them repeats the look. */
  private async applyInChunks(box: OpenedMailbox, fencingToken: string, cursor: ChangeBatch['cursor'], changes: UidChange[]): Promise<void> {
    if (changes.length === 0 && cursor.next === cursor.expected) return;
    for (let i = 0; i < changes.length || i === 0; i += CHUNK) {
      const last = i + CHUNK >= changes.length;
      await this.apply(box, fencingToken, { ...cursor, next: last ? cursor.next : cursor.expected! }, changes.slice(i, i + CHUNK));
    }
  }

  private async apply(box: OpenedMailbox, fencingToken: string, cursor: ChangeBatch['cursor'], changes: UidChange[]): Promise<void> {
    const done = await appendChanges(this.ctx.redis, this.ctx.keys, { mailbox: this.mailbox, uidValidity: box.uidValidity, fencingToken, cursor, changes });
    this.ctx.fault.hit('after-change-append');
    if (!done.applied) {
      this.ctx.logger.debug({ mailbox: this.mailbox, cursor }, 'changes already recorded (the change cursor had moved)');
      return;
    }
    for (const change of changes) {
      if (change.event) this.ctx.metrics.changeEvents.inc({ ...this.labels, type: change.event.type.slice('message.'.length) });
    }
  }
}
