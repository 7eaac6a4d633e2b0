// Where a mailbox's sync starts, the UID/UIDVALIDITY state machine: a mailbox never seen starts
// at START_FROM; a changed UIDVALIDITY re-reads from the last ingested date minus a margin (or
// everything); an operator's reset re-reads from a date. Re-reading is always safe because the
// append skips keys already ingested; "jump to UIDNEXT" after a change would lose mail.
import type { ImapFlow } from 'imapflow';
import type { AccountContext } from './mailbox-context.ts';
import { rebaseMailbox } from './stream-append.ts';

export interface MailboxState {
  uidValidity: string | null;
  lastUid: number;
  lastInternalDate: number;
  /** `mailbox reset --since`: a date (ms) the operator asked to re-read from. */
  resetSince: string | null;
  /** A backfill under FETCH_FILTER lists the UIDs up to this one through the filter; 0 for none. */
  filterUntil: number;
}

export interface OpenedMailbox {
  path: string;
  uidValidity: string;
  uidNext: number;
  /** HIGHESTMODSEQ when the mailbox was opened (CONDSTORE), else null. */
  highestModseq: string | null;
}

/** Where a sync continues: after `lastUid`, through FETCH_FILTER up to `filterUntil`. */
export interface Position { lastUid: number; filterUntil: number }

const DAY_MS = 86_400_000;

export async function readMailboxState(ctx: AccountContext, mailbox: string): Promise<MailboxState> {
  const raw = await ctx.redis.hgetall(ctx.keys.mailbox(mailbox));
  return {
    uidValidity: raw.uidValidity ?? null,
    lastUid: Number(raw.lastUid ?? 0),
    lastInternalDate: Number(raw.lastInternalDate ?? 0),
    resetSince: raw.resetSince ?? null,
    filterUntil: Number(raw.filterUntil ?? 0),
  };
}

/** The highest UID before the first message received on or after `since` (IMAP SINCE is by day). */
async function lastUidBefore(client: ImapFlow, box: OpenedMailbox, sinceMs: number): Promise<number> {
  const found = await client.search({ since: new Date(sinceMs - DAY_MS) }, { uid: true });
  const uids = Array.isArray(found) ? found : [];
  if (uids.length === 0) return box.uidNext - 1;
  return Math.min(...uids) - 1;
}

/** Decides the UID to continue after, recording any move in Redis; returns it. */
export async function settlePosition(ctx: AccountContext, client: ImapFlow, box: OpenedMailbox, fencingToken: string): Promise<Position> {
  const state = await readMailboxState(ctx, box.path);
  const log = ctx.logger.child({ mailbox: box.path });
  let lastUid: number;
  let resetSince: string | undefined;

  if (state.uidValidity === null) {
    const from = ctx.settings.startFrom;
    lastUid = from.kind === 'all' ? 0 : from.kind === 'now' ? box.uidNext - 1 : await lastUidBefore(client, box, from.date.getTime());
    log.info({ startFrom: from.kind, uidValidity: box.uidValidity, lastUid }, 'mailbox seen for the first time');
  } else if (state.uidValidity !== box.uidValidity) {
    ctx.metrics.uidValidityChanges.inc({ account: ctx.keys.account, mailbox: box.path });
    const full = ctx.settings.uidValidityResync === 'full' || state.lastInternalDate === 0;
    lastUid = full ? 0 : await lastUidBefore(client, box, state.lastInternalDate - ctx.settings.uidValidityMarginMs);
    log.warn({ previousUidValidity: state.uidValidity, uidValidity: box.uidValidity, resync: full ? 'full' : 'since-last', fromUid: lastUid + 1 },
      'UIDVALIDITY changed: re-syncing; messages already ingested are skipped');
  } else if (state.resetSince !== null) {
    resetSince = state.resetSince;
    lastUid = await lastUidBefore(client, box, Number(state.resetSince));
    log.info({ since: new Date(Number(state.resetSince)).toISOString(), fromUid: lastUid + 1 }, 'mailbox reset: re-syncing from a date');
  } else {
    return { lastUid: state.lastUid, filterUntil: state.filterUntil };
  }

  // Every re-read is a backfill: FETCH_FILTER decides what of the mailbox as it is now gets read.
  const filterUntil = ctx.settings.fetchFilter ? box.uidNext - 1 : 0;
  if (!ctx.readOnly) {
    await rebaseMailbox(ctx.redis, ctx.keys, box.path, {
      fencingToken, expectedUidValidity: state.uidValidity, uidValidity: box.uidValidity, lastUid, resetSince, ...(filterUntil > 0 ? { filterUntil } : {}),
    });
  }
  return { lastUid, filterUntil };
}
