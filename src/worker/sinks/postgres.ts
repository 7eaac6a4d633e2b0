// PostgreSQL sink: one INSERT per read batch (one transaction), columns extracted from the email
// JSON by PostgreSQL itself so the worker never parses it, and ON CONFLICT on the idempotency key
// so a redelivered email is a no-op.
import pg from 'pg';
import { PermanentDeliveryError, TransientDeliveryError } from '../../core/errors.ts';
import { migrate } from './postgres-migrate.ts';
import type { Sink } from './types.ts';

const INSERT = `
INSERT INTO emails (idempotency_key, account, mailbox, uid_validity, uid, message_id, from_address,
  to_addresses, subject, sent_at, internal_date, size_bytes, attachment_count, ingested_at,
  stream_entry_id, email)
SELECT k, e->>'account', e->>'mailbox', e->>'uidValidity', (e->>'uid')::bigint, e->>'messageId',
  e->'envelope'->'from'->0->>'address',
  COALESCE(ARRAY(SELECT a->>'address' FROM jsonb_array_elements(
    CASE WHEN jsonb_typeof(e->'envelope'->'to') = 'array' THEN e->'envelope'->'to' ELSE '[]'::jsonb END) a), '{}'),
  e->'envelope'->>'subject', mailstream_timestamptz(e->'envelope'->>'date'),
  mailstream_timestamptz(e->>'internalDate'), (e->>'size')::bigint,
  CASE WHEN jsonb_typeof(e->'attachments') = 'array' THEN jsonb_array_length(e->'attachments') ELSE 0 END,
  mailstream_timestamptz(e->>'ingestedAt'), id, e
FROM unnest($1::text[], $2::text[], $3::jsonb[]) AS t(k, id, e)
ON CONFLICT (idempotency_key) DO NOTHING`;

/** SQLSTATE classes that say this data can never be stored (bad value, constraint), not that the server is unwell. */
function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^(22|23)/.test(code);
}

export function createPostgresSink(url: string): Sink {
  const pool = new pg.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: 5_000 });
  // An idle client's error (server restart) must not crash the process; the next query reconnects.
  pool.on('error', () => undefined);
  let migrated: Promise<unknown> | undefined;

  async function ensureSchema(): Promise<void> {
    migrated ??= (async () => {
      const client = await pool.connect();
      try { await migrate(client); } finally { client.release(); }
    })().catch((err: unknown) => { migrated = undefined; throw err; });
    await migrated;
  }

  return {
    kind: 'postgres',
    mode: 'batch',
    async deliver(deliveries) {
      try {
        await ensureSchema();
        await pool.query(INSERT, [deliveries.map((d) => d.key), deliveries.map((d) => d.id), deliveries.map((d) => d.email)]);
      } catch (err) {
        const code = (err as { code?: string }).code ?? 'unknown';
        if (isDataError(err)) throw new PermanentDeliveryError(`postgres refused the batch (${code}): ${(err as Error).message}`, { cause: err, code: 'ERR_POSTGRES_DATA' });
        throw new TransientDeliveryError(`postgres insert failed (${code}): ${(err as Error).message}`, { cause: err, code: 'ERR_POSTGRES' });
      }
    },
    async check() {
      await pool.query('SELECT 1');
    },
    async close() { await pool.end(); },
  };
}
