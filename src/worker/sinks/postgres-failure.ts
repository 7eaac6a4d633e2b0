// What a failed INSERT means for the emails in it, decided from where it failed and PostgreSQL's
// SQLSTATE (https://www.postgresql.org/docs/current/errcodes-appendix.html), never from the text.
import pg from 'pg';
import type { Outcome } from './types.ts';

export type PostgresFailure =
  /** PostgreSQL refused the rows themselves (bad value, constraint): retrying the same rows cannot help. */
  | { kind: 'data'; reason: string }
  | { kind: 'retry'; outcome: Outcome & { status: 'retry' } };

/** `connect`: no client could be had from the pool; `query`: a client sent the statement. */
export type PostgresStage = 'connect' | 'query';

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && !err.message.includes(code) ? `${code}: ${err.message}` : err.message || err.name;
}

export function classifyPostgresFailure(err: unknown, stage: PostgresStage): PostgresFailure {
  // Whatever stopped us from getting a connection (refused, pool wait timed out, login refused,
  // server starting up) says nothing about the emails.
  if (stage === 'connect') return { kind: 'retry', outcome: { status: 'retry', kind: 'sink-unavailable', reason: `postgres unreachable: ${describe(err)}` } };
  // An error the server did not send (socket closed mid-query, connection terminated) is the
  // connection's, not the data's.
  if (!(err instanceof pg.DatabaseError) || !err.code) {
    return { kind: 'retry', outcome: { status: 'retry', kind: 'sink-unavailable', reason: `postgres connection lost: ${describe(err)}` } };
  }
  const { code } = err;
  const said = `postgres refused the insert (${code}): ${err.message}`;
  const sqlClass = code.slice(0, 2);
  if (sqlClass === '22' || sqlClass === '23') return { kind: 'data', reason: `postgres refused the email (${code}): ${err.message}` };
  // 08 connection exception, 53 insufficient resources (disk full, too many connections),
  // 57P01-57P03 shutting down / cannot connect now: the server, not the emails.
  if (sqlClass === '08' || sqlClass === '53' || /^57P0[1-3]$/.test(code)) return { kind: 'retry', outcome: { status: 'retry', kind: 'sink-unavailable', reason: said } };
  // 57014: statement_timeout cancelled the insert.
  if (code === '57014') return { kind: 'retry', outcome: { status: 'retry', kind: 'sink-timeout', reason: said } };
  return { kind: 'retry', outcome: { status: 'retry', kind: 'sink-failed', reason: said } };
}
