// Versioned migrations for the PostgreSQL sink: files `NNN_name.sql` beside this module, each
// applied once in its own transaction and recorded in `mailstream_migrations`. An advisory lock
// keeps two workers starting together from applying the same file twice.
import { readdirSync, readFileSync } from 'node:fs';
import type pg from 'pg';

const DIR = new URL('./postgres-migrations/', import.meta.url);
const LOCK_ID = 0x6d61696c; // "mail"

export interface Migration { version: number; name: string; sql: string }

export function migrations(): Migration[] {
  return readdirSync(DIR)
    .filter((f) => /^\d+_[a-z0-9_]+\.sql$/.test(f))
    .sort()
    .map((f) => ({ version: Number(f.slice(0, f.indexOf('_'))), name: f, sql: readFileSync(new URL(f, DIR), 'utf8') }));
}

/** Applies what is missing; returns the file names applied now. */
export async function migrate(client: pg.ClientBase): Promise<string[]> {
  const applied: string[] = [];
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [LOCK_ID]);
    await client.query(`CREATE TABLE IF NOT EXISTS mailstream_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = new Set((await client.query<{ version: number }>('SELECT version FROM mailstream_migrations')).rows.map((r) => r.version));
    for (const m of migrations()) {
      if (done.has(m.version)) continue;
      await client.query(m.sql);
      await client.query('INSERT INTO mailstream_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      applied.push(m.name);
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
  return applied;
}
