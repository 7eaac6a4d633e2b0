// PostgreSQL sink, TRACK_CHANGES' events (entry v3): each keeps the email's row current, in
// stream order, one statement each. message.updated sets flags and labels; message.moved puts
// the row where the message is now (and un-deletes it); message.deleted sets deleted_at when the
// row is still at the place the message left (a move's arrival elsewhere may have come first).
// An event for a row not there yet waits (retry): its email is behind it, in a retry or the DLQ.
// Rows are an account's own (migration 004): an event changes its account's copy only.
import type pg from 'pg';
import type { ChangeEvent } from '../../core/entry.ts';
import type { Delivery, Outcome } from './types.ts';
import { DELIVERED } from './types.ts';

/** Flags (and labels, when the event has them) unless a later event set them already. */
const UPDATE = `
UPDATE emails SET flags = $3::text[], labels = COALESCE($4::text[], labels), flags_changed_by = $2
WHERE account = $5 AND idempotency_key = $1
  AND (flags_changed_by IS NULL OR mailstream_entry_order(flags_changed_by) < mailstream_entry_order($2))`;

/** Every SET expression reads the row as it was: both conditions are about the old values. */
const NEWER_PLACE = '(location_changed_by IS NULL OR mailstream_entry_order(location_changed_by) < mailstream_entry_order($2))';
const NEWER_FLAGS = '(flags_changed_by IS NULL OR mailstream_entry_order(flags_changed_by) < mailstream_entry_order($2))';

/** The new place unless a later move set one already; the flags as for an update. */
const MOVE = `
UPDATE emails SET
  mailbox = CASE WHEN ${NEWER_PLACE} THEN $5 ELSE mailbox END,
  uid_validity = CASE WHEN ${NEWER_PLACE} THEN $6 ELSE uid_validity END,
  uid = CASE WHEN ${NEWER_PLACE} THEN $7::bigint ELSE uid END,
  deleted_at = CASE WHEN ${NEWER_PLACE} THEN NULL ELSE deleted_at END,
  location_changed_by = CASE WHEN ${NEWER_PLACE} THEN $2 ELSE location_changed_by END,
  flags = CASE WHEN ${NEWER_FLAGS} THEN $3::text[] ELSE flags END,
  labels = CASE WHEN ${NEWER_FLAGS} THEN COALESCE($4::text[], labels) ELSE labels END,
  flags_changed_by = CASE WHEN ${NEWER_FLAGS} THEN $2 ELSE flags_changed_by END
WHERE account = $8 AND idempotency_key = $1`;

/** A UID is never used again in its mailbox: once gone, the row is deleted if it is still there. */
const DELETE = `
UPDATE emails SET deleted_at = COALESCE(deleted_at, $5::timestamptz)
WHERE account = $6 AND idempotency_key = $1 AND mailbox = $2 AND uid_validity = $3 AND uid = $4::bigint`;

const EXISTS = 'SELECT 1 FROM emails WHERE account = $1 AND idempotency_key = $2';

function statementOf(event: ChangeEvent, entryId: string): [string, unknown[]] {
  switch (event.type) {
    case 'message.updated':
      return [UPDATE, [event.messageKey, entryId, event.flags, event.gmail?.labels ?? null, event.account]];
    case 'message.moved':
      return [MOVE, [event.messageKey, entryId, event.flags, event.gmail?.labels ?? null, event.mailbox, event.uidValidity, event.uid, event.account]];
    case 'message.deleted':
      return [DELETE, [event.messageKey, event.mailbox, event.uidValidity, event.uid, event.observedAt, event.account]];
  }
}

function parseEvent(delivery: Delivery): ChangeEvent | undefined {
  try {
    const event = JSON.parse(delivery.email) as ChangeEvent;
    return event && typeof event.messageKey === 'string' && typeof event.account === 'string' && event.type === delivery.type ? event : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Applies the events in order on one connection. A failure of the connection or the server
 * throws (the caller sorts it out for the whole lot); an event PostgreSQL refuses for its data,
 * or that is not an event, is refused alone.
 */
export async function applyEvents(client: pg.ClientBase, events: readonly Delivery[], isDataError: (err: unknown) => string | undefined): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  for (const delivery of events) {
    const event = parseEvent(delivery);
    if (!event) { outcomes.push({ status: 'permanent', reason: `the stream entry's email is not a ${delivery.type ?? 'change'} event` }); continue; }
    const [sql, params] = statementOf(event, delivery.id);
    try {
      const changed = await client.query(sql, params);
      if ((changed.rowCount ?? 0) > 0 || (await client.query(EXISTS, [event.account, event.messageKey])).rowCount) outcomes.push(DELIVERED);
      else outcomes.push({ status: 'retry', reason: `email ${event.messageKey} is not in the table yet (its message.new was not delivered)` });
    } catch (err) {
      const refused = isDataError(err);
      if (refused === undefined) throw err;
      outcomes.push({ status: 'permanent', reason: refused });
    }
  }
  return outcomes;
}
