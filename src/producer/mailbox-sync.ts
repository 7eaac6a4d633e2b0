// Fetches every message above a UID, in UID order and in batches, and appends each batch in one
// atomic step. Fetching batch N+1 overlaps parsing (on the parse threads) and appending batch N;
// at most two batches are in memory, a batch is also cut by size, and large batches do not
// overlap, so huge messages do not pile up. With a blob store, a batch is appended only once every
// blob of it is stored; when the store fails, the sync starts over after the last appended UID as
// soon as the store answers again (the stream gate waits for it).
import type { FetchMessageObject, ImapFlow } from 'imapflow';
import { isBlobOutage } from './blob-health.ts';
import { tracksAnything } from './change-events.ts';
import type { FetchMeta } from './email-entry.ts';
import { filterSearch } from './fetch-filter.ts';
import type { AccountContext } from './mailbox-context.ts';
import type { OpenedMailbox, Position } from './mailbox-position.ts';
import type { BatchAppend, PreparedEntry } from './stream-append.ts';
import type { PauseReason } from './stream-gate.ts';

/** Bytes of raw mail one batch may hold (besides FETCH_BATCH_SIZE). */
const BATCH_BYTES = 24 * 1024 * 1024;
/** Messages this large are streamed (partial fetches) to a parse thread, alone in their batch. */
export const HUGE_BYTES = 4 * 1024 * 1024;
const DOWNLOAD_CHUNK = 512 * 1024;

export interface SyncProgress {
  /** After each appended batch: the new lastUid. */
  onBatch(lastUid: number, appended: number): void;
  /** Every IMAP answer (liveness). */
  onResponse(): void;
  /** Backpressure began (a reason) or ended (null). */
  onPause?(reason: PauseReason | null): void;
  signal: AbortSignal;
}

export interface SyncResult { fetched: number; appended: number; skipped: number; lastUid: number }

interface Listed { uid: number; size: number }

/** "3,5:9,12" for [3,5,6,7,8,9,12] (sorted). */
export function uidSet(uids: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < uids.length; i++) {
    const start = uids[i]!;
    while (i + 1 < uids.length && uids[i + 1] === uids[i]! + 1) i++;
    parts.push(start === uids[i] ? String(start) : `${start}:${uids[i]}`);
  }
  return parts.join(',');
}

export function cutBatches(listed: readonly Listed[], maxCount: number, maxBytes: number): Listed[][] {
  const batches: Listed[][] = [];
  let current: Listed[] = [];
  let bytes = 0;
  for (const item of listed) {
    const alone = item.size >= HUGE_BYTES || current.some((m) => m.size >= HUGE_BYTES);
    if (current.length > 0 && (alone || current.length >= maxCount || bytes + item.size > maxBytes)) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += item.size;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

async function listNewUids(client: ImapFlow, afterUid: number): Promise<Listed[]> {
  const listed: Listed[] = [];
  // `N:*` always matches the highest UID, even below N (RFC 3501), hence the filter.
  for await (const msg of client.fetch(`${afterUid + 1}:*`, { uid: true, size: true }, { uid: true })) {
    if (msg.uid > afterUid) listed.push({ uid: msg.uid, size: msg.size ?? 0 });
  }
  return listed.sort((a, b) => a.uid - b.uid);
}

/** A backfill under FETCH_FILTER: the matching UIDs up to `filterUntil`, then everything after it. */
async function listFiltered(ctx: AccountContext, client: ImapFlow, afterUid: number, filterUntil: number): Promise<Listed[]> {
  const { query } = filterSearch(ctx.settings.fetchFilter!, client.capabilities);
  const found = await client.search({ ...query, uid: `${afterUid + 1}:${filterUntil}` }, { uid: true });
  const matches = (Array.isArray(found) ? found : []).filter((uid) => uid > afterUid && uid <= filterUntil).sort((a, b) => a - b);
  const listed: Listed[] = [];
  if (matches.length > 0) {
    for await (const msg of client.fetch(uidSet(matches), { uid: true, size: true }, { uid: true })) listed.push({ uid: msg.uid, size: msg.size ?? 0 });
  }
  const after = (await listNewUids(client, filterUntil));
  return [...listed.sort((a, b) => a.uid - b.uid), ...after];
}

/** What the append records for change tracking (the moves announced: not on Gmail, where a message is in many mailboxes at once). */
function trackingOf(ctx: AccountContext, client: ImapFlow, box: OpenedMailbox): BatchAppend['tracking'] {
  if (ctx.readOnly || !tracksAnything(ctx.settings.changes)) return undefined;
  return { announceMoves: ctx.settings.changes.deletes && !client.capabilities.has('X-GM-EXT-1'), modseqFloor: box.highestModseq };
}

function metaOf(ctx: AccountContext, box: OpenedMailbox, msg: FetchMessageObject, gmail: boolean): FetchMeta {
  const internal = msg.internalDate;
  return {
    account: ctx.account.account,
    mailbox: box.path,
    uidValidity: box.uidValidity,
    uid: msg.uid,
    internalDate: internal ? new Date(internal).toISOString() : null,
    flags: [...(msg.flags ?? [])],
    size: msg.size ?? msg.source?.length ?? 0,
    ...(gmail && msg.emailId ? { gmail: { msgId: msg.emailId, threadId: msg.threadId ?? null, labels: [...(msg.labels ?? [])] } } : {}),
  };
}

function metaQuery(gmail: boolean) {
  return { uid: true, flags: true, internalDate: true, size: true, ...(gmail ? { threadId: true, labels: true } : {}) };
}

/** A parse is awaited with its batch; until then a failure must not count as unhandled. */
function observed(parse: Promise<PreparedEntry>): Promise<PreparedEntry> {
  parse.catch(() => undefined);
  return parse;
}

async function fetchWhole(ctx: AccountContext, client: ImapFlow, box: OpenedMailbox, batch: readonly Listed[], gmail: boolean): Promise<Array<Promise<PreparedEntry>>> {
  const parsing: Array<Promise<PreparedEntry>> = [];
  for await (const msg of client.fetch(uidSet(batch.map((b) => b.uid)), { ...metaQuery(gmail), source: true }, { uid: true })) {
    if (msg.source) parsing.push(observed(ctx.pool.parse(msg.source, metaOf(ctx, box, msg, gmail))));
  }
  return parsing;
}

/** A huge message: metadata first, then the raw message in partial fetches straight to a parse thread. */
async function streamHuge(ctx: AccountContext, client: ImapFlow, box: OpenedMailbox, uid: number, gmail: boolean): Promise<Array<Promise<PreparedEntry>>> {
  const msg = await client.fetchOne(String(uid), metaQuery(gmail), { uid: true });
  if (!msg) return [];
  const download = await client.download(String(uid), undefined, { uid: true, chunkSize: DOWNLOAD_CHUNK });
  if (!download.content) return [];
  const parse = ctx.pool.parseStream(metaOf(ctx, box, msg, gmail));
  for await (const chunk of download.content) parse.write(chunk as Buffer);
  return [observed(parse.end())];
}

/**
 * Every parse of a batch; with a blob store, through its breaker: each parse writes its blobs, and
 * then all of them are made durable together (the barrier), before anything refers to them.
 */
function parsed(ctx: AccountContext, parsing: Array<Promise<PreparedEntry>>): Promise<PreparedEntry[]> {
  if (!ctx.blobs) return Promise.all(parsing);
  return ctx.blobs.guard(async () => {
    const entries = await Promise.all(parsing);
    ctx.fault.hit('after-blob-writes');
    // The barrier is where a file store waits on the disk (its puts only append): timed as a kind.
    const endBarrier = ctx.metrics.blobWriteDuration.startTimer({ kind: 'barrier' });
    await ctx.pool.flushBlobs(entries).catch((err: unknown) => {
      // Every put went through, but the barrier could not make them durable: a failed write too.
      ctx.metrics.blobWriteFailures.inc({ kind: 'barrier' });
      throw err;
    });
    endBarrier();
    return entries;
  });
}

export async function syncNewMail(ctx: AccountContext, client: ImapFlow, box: OpenedMailbox, from: Position, fencingToken: string, progress: SyncProgress): Promise<SyncResult> {
  const result: SyncResult = { fetched: 0, appended: 0, skipped: 0, lastUid: from.lastUid };
  for (;;) {
    try {
      await syncFrom(ctx, client, box, result, from.filterUntil, fencingToken, progress);
      return result;
    } catch (err) {
      // Nothing of the failed batch was appended; the gate holds the next fetch until the store
      // answers, and the batch is fetched again.
      if (!isBlobOutage(err) || progress.signal.aborted) throw err;
      ctx.logger.debug({ mailbox: box.path, lastUid: result.lastUid, err }, 'batch not appended: its blobs were not stored');
    }
  }
}

/** Syncs from `result.lastUid` on, adding to `result` batch by batch. */
async function syncFrom(ctx: AccountContext, client: ImapFlow, box: OpenedMailbox, result: SyncResult, filterUntil: number, fencingToken: string, progress: SyncProgress): Promise<void> {
  const filtering = ctx.settings.fetchFilter !== undefined && result.lastUid < filterUntil;
  const listed = filtering ? await listFiltered(ctx, client, result.lastUid, filterUntil) : await listNewUids(client, result.lastUid);
  progress.onResponse();
  const tracking = trackingOf(ctx, client, box);
  if (listed.length === 0) {
    // The filter matched nothing more: the backfill is done, the position moves past it.
    if (filtering) await advancePast(ctx, box, result, filterUntil, fencingToken, tracking);
    return;
  }

  const gmail = client.capabilities.has('X-GM-EXT-1');
  const labels = { account: ctx.keys.account, mailbox: box.path };
  let appending: Promise<void> | undefined;
  let inFlight = 0;

  for (const batch of cutBatches(listed, ctx.settings.fetchBatchSize, BATCH_BYTES)) {
    if (progress.signal.aborted) break;
    await ctx.gate?.waitForRoom(box.path, inFlight + batch.length, progress.signal, progress.onPause);
    if (progress.signal.aborted) break;
    // Two batches of huge messages in memory at once would cost more than the overlap gains.
    const bytes = batch.reduce((sum, m) => sum + m.size, 0);
    if (appending && bytes > BATCH_BYTES / 4) await appending;
    const endFetch = ctx.metrics.fetchDuration.startTimer(labels);
    const parsing = batch[0]!.size >= HUGE_BYTES
      ? await streamHuge(ctx, client, box, batch[0]!.uid, gmail)
      : await fetchWhole(ctx, client, box, batch, gmail);
    endFetch();
    progress.onResponse();
    ctx.metrics.emailsFetched.inc(labels, parsing.length);
    result.fetched += parsing.length;
    ctx.fault.hit('after-fetch');

    // Appends stay in UID order: the previous batch is written before this one.
    if (appending) await appending;
    const batchLastUid = batch[batch.length - 1]!.uid;
    inFlight = parsing.length;
    appending = parsed(ctx, parsing).then(async (entries) => {
      ctx.fault.hit('after-blobs');
      entries.sort((a, b) => a.uid - b.uid);
      const endAppend = ctx.metrics.appendDuration.startTimer(labels);
      const done = await ctx.appender.append({ mailbox: box.path, uidValidity: box.uidValidity, lastUid: batchLastUid, entries, fencingToken, tracking });
      endAppend();
      ctx.fault.hit('after-append');
      ctx.metrics.emailsAppended.inc(labels, done.appended);
      ctx.metrics.emailsSkipped.inc(labels, done.skipped);
      if (done.moved) ctx.metrics.changeEvents.inc({ ...labels, type: 'moved' }, done.moved);
      ctx.metrics.parseErrors.inc(labels, entries.filter((e) => e.parseError).length);
      result.appended += done.appended;
      result.skipped += done.skipped;
      result.lastUid = batchLastUid;
      inFlight = 0;
      progress.onBatch(batchLastUid, done.appended);
    });
    // Observed at once so a failure while the next batch is fetched is not an unhandled rejection.
    appending.catch(() => undefined);
  }
  if (appending) await appending;
  if (filtering && !progress.signal.aborted && result.lastUid < filterUntil) await advancePast(ctx, box, result, filterUntil, fencingToken, tracking);
}

/** Moves lastUid to the end of a filtered backfill, so the filter is not asked again. */
async function advancePast(ctx: AccountContext, box: OpenedMailbox, result: SyncResult, filterUntil: number, fencingToken: string, tracking: BatchAppend['tracking']): Promise<void> {
  await ctx.appender.append({ mailbox: box.path, uidValidity: box.uidValidity, lastUid: filterUntil, entries: [], fencingToken, tracking });
  result.lastUid = filterUntil;
}
