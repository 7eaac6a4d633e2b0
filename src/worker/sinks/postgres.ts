// PostgreSQL sink: one multi-row INSERT per batch (one statement, one transaction), columns
// extracted from the email JSON by PostgreSQL itself so the worker never parses it, and ON
// CONFLICT on the account and idempotency key so a redelivered email is a no-op (the same message
// in two accounts is two rows: migration 004). A batch refused for its data
// is inserted again row by row, so only the rows PostgreSQL refuses are permanent. Changes to
// emails (TRACK_CHANGES) update their rows after the batch's new emails are in (postgres-events.ts).
import pg from 'pg';
import { InFlightLimit, NOT_ATTEMPTED } from './in-flight.ts';
import { applyEvents } from './postgres-events.ts';
import { classifyPostgresFailure, type PostgresFailure } from './postgres-failure.ts';
import { migrate } from './postgres-migrate.ts';
import { DELIVERED, type Delivery, type Outcome, type Sink } from './types.ts';

// The email rows and, from the rows inserted, their attachments (migration 002): one statement,
// so an email never lands without its attachment rows. A malformed attachment is skipped rather
// than refusing the email.
const INSERT = `
WITH inserted AS (
INSERT INTO emails (idempotency_key, account, mailbox, uid_validity, uid, message_id, from_address,
  to_addresses, subject, sent_at, internal_date, size_bytes, attachment_count, ingested_at,
  stream_entry_id, raw_ref, flags, labels, email)
SELECT k, e->>'account', e->>'mailbox', e->>'uidValidity', (e->>'uid')::bigint, e->>'messageId',
  e->'envelope'->'from'->0->>'address',
  COALESCE(ARRAY(SELECT a->>'address' FROM jsonb_array_elements(
    CASE WHEN jsonb_typeof(e->'envelope'->'to') = 'array' THEN e->'envelope'->'to' ELSE '[]'::jsonb END) a), '{}'),
  e->'envelope'->>'subject', mailstream_timestamptz(e->'envelope'->>'date'),
  mailstream_timestamptz(e->>'internalDate'), (e->>'size')::bigint,
  CASE WHEN jsonb_typeof(e->'attachments') = 'array' THEN jsonb_array_length(e->'attachments') ELSE 0 END,
  mailstream_timestamptz(e->>'ingestedAt'), id, e->'raw'->>'ref', mailstream_text_array(e->'flags'),
  CASE WHEN jsonb_typeof(e->'gmail'->'labels') = 'array' THEN mailstream_text_array(e->'gmail'->'labels') END, e
FROM unnest($1::text[], $2::text[], $3::jsonb[]) AS t(k, id, e)
ON CONFLICT (account, idempotency_key) DO NOTHING
RETURNING account, idempotency_key, email->'attachments' AS attachments)
INSERT INTO email_attachments (account, idempotency_key, attachment_index, filename, content_type, size_bytes, sha256, ref, content_id, disposition)
SELECT i.account, i.idempotency_key, (a.ord - 1)::integer, a.att->>'filename', a.att->>'contentType',
  CASE WHEN jsonb_typeof(a.att->'size') = 'number' THEN (a.att->>'size')::numeric::bigint END,
  a.att->>'sha256', a.att->>'ref', a.att->>'contentId', a.att->>'disposition'
FROM inserted i, jsonb_array_elements(CASE WHEN jsonb_typeof(i.attachments) = 'array' THEN i.attachments ELSE '[]'::jsonb END) WITH ORDINALITY AS a(att, ord)
WHERE jsonb_typeof(a.att) = 'object'
ON CONFLICT DO NOTHING`;

const POOL_SIZE = 4;

/** Rows of a batch, as the INSERT's three array parameters. */
function parameters(rows: readonly Delivery[]): [string[], string[], string[]] {
  return [rows.map((d) => d.key), rows.map((d) => d.id), rows.map((d) => d.email)];
}

export function createPostgresSink(url: string): Sink {
  const pool = new pg.Pool({ connectionString: url, max: POOL_SIZE, connectionTimeoutMillis: 5_000 });
  // Batches of several accounts queue here for a connection rather than in the pool, whose
  // connectionTimeoutMillis would also end a wait behind slow inserts: only a connection that
  // cannot be opened in time says the server is unavailable.
  const slots = new InFlightLimit(POOL_SIZE);
  // An idle client's error (server restart) must not crash the process; the next query reconnects.
  pool.on('error', () => undefined);
  let migrated: Promise<PostgresFailure | undefined> | undefined;
  let closing: Promise<void> | undefined;

  /** Runs `work` on a pooled client; undefined when it succeeded, else what its failure means. */
  async function onClient(work: (client: pg.PoolClient) => Promise<unknown>, signal: AbortSignal): Promise<PostgresFailure | undefined> {
    if (!(await slots.acquire(signal))) return { kind: 'retry', outcome: NOT_ATTEMPTED };
    try {
      return await onPooledClient(work);
    } finally {
      slots.release();
    }
  }

  async function onPooledClient(work: (client: pg.PoolClient) => Promise<unknown>): Promise<PostgresFailure | undefined> {
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      return classifyPostgresFailure(err, 'connect');
    }
    let broken: unknown;
    try {
      await work(client);
      return undefined;
    } catch (err) {
      // A client whose connection failed must not go back to the pool.
      if (!(err instanceof pg.DatabaseError)) broken = err;
      return classifyPostgresFailure(err, 'query');
    } finally {
      client.release(broken instanceof Error ? broken : undefined);
    }
  }

  /** Migrations run once per process; a failed run is tried again by the next batch. */
  async function ensureSchema(signal: AbortSignal): Promise<PostgresFailure | undefined> {
    migrated ??= onClient((client) => migrate(client), signal).then((failure) => {
      if (failure) migrated = undefined;
      return failure;
    });
    const failure = await migrated;
    // A migration PostgreSQL refuses is the schema's problem, never the emails'.
    if (failure?.kind === 'data') return { kind: 'retry', outcome: { status: 'retry', kind: 'sink-failed', reason: `postgres migration failed: ${failure.reason}` } };
    return failure;
  }

  const insert = (rows: readonly Delivery[], signal: AbortSignal) => onClient((client) => client.query(INSERT, parameters(rows)), signal);

  /** One bad email refuses the whole batch: insert row by row so only the bad ones are refused. */
  async function rowByRow(batch: readonly Delivery[], signal: AbortSignal): Promise<Outcome[]> {
    const outcomes: Outcome[] = [];
    for (const [i, delivery] of batch.entries()) {
      const failure = await insert([delivery], signal);
      if (!failure) { outcomes.push(DELIVERED); continue; }
      if (failure.kind === 'data') { outcomes.push({ status: 'permanent', reason: failure.reason }); continue; }
      // The server went away meanwhile: the rest wait with it instead of each waiting for a connection.
      for (let rest = i; rest < batch.length; rest++) outcomes.push(failure.outcome);
      break;
    }
    return outcomes;
  }

  async function insertEmails(batch: readonly Delivery[], signal: AbortSignal): Promise<Outcome[]> {
    const failure = await insert(batch, signal);
    if (!failure) return batch.map(() => DELIVERED);
    if (failure.kind === 'retry') return batch.map(() => failure.outcome);
    if (batch.length === 1) return [{ status: 'permanent', reason: failure.reason }];
    return rowByRow(batch, signal);
  }

  async function changeRows(events: readonly Delivery[], signal: AbortSignal): Promise<Outcome[]> {
    let outcomes: Outcome[] = [];
    const dataError = (err: unknown) => {
      const failure = classifyPostgresFailure(err, 'query');
      return failure.kind === 'data' ? failure.reason : undefined;
    };
    const failure = await onClient(async (client) => { outcomes = await applyEvents(client, events, dataError); }, signal);
    if (!failure) return outcomes;
    return events.map(() => (failure.kind === 'retry' ? failure.outcome : { status: 'permanent', reason: failure.reason }));
  }

  return {
    kind: 'postgres',
    async deliver(batch, signal) {
      if (batch.length === 0) return [];
      const schema = await ensureSchema(signal);
      if (schema) return batch.map(() => (schema.kind === 'retry' ? schema.outcome : { status: 'permanent', reason: schema.reason }));
      const emails = batch.filter((d) => (d.type ?? 'message.new') === 'message.new');
      if (emails.length === batch.length) return insertEmails(batch, signal);
      // New emails first: a change to an email of the same batch finds its row.
      const events = batch.filter((d) => (d.type ?? 'message.new') !== 'message.new');
      const outcomes = new Map<Delivery, Outcome>();
      if (emails.length > 0) (await insertEmails(emails, signal)).forEach((o, i) => outcomes.set(emails[i]!, o));
      (await changeRows(events, signal)).forEach((o, i) => outcomes.set(events[i]!, o));
      return batch.map((d) => outcomes.get(d)!);
    },
    async check() {
      await pool.query('SELECT 1');
    },
    async close() {
      closing ??= pool.end();
      await closing;
    },
  };
}
