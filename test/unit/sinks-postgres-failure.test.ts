// How the PostgreSQL sink sorts a failed insert: by where it failed and the SQLSTATE, never the text.
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { classifyPostgresFailure } from '../../src/worker/sinks/postgres-failure.ts';

function serverError(code: string, message = 'server said no'): pg.DatabaseError {
  const err = new pg.DatabaseError(message, message.length, 'error');
  err.code = code;
  return err;
}

describe('PostgreSQL failures', () => {
  it('no connection from the pool means the server is unavailable, whatever the error', () => {
    for (const err of [Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }), new Error('timeout exceeded when trying to connect'), serverError('28P01')]) {
      expect(classifyPostgresFailure(err, 'connect')).toMatchObject({ kind: 'retry', outcome: { status: 'retry', kind: 'sink-unavailable' } });
    }
  });

  it('classes 22 and 23 are the data: the rows are refused', () => {
    expect(classifyPostgresFailure(serverError('22P02', 'invalid input syntax for type bigint: "x"'), 'query'))
      .toEqual({ kind: 'data', reason: 'postgres refused the email (22P02): invalid input syntax for type bigint: "x"' });
    expect(classifyPostgresFailure(serverError('23502'), 'query')).toMatchObject({ kind: 'data' });
  });

  it('a connection lost mid-query, connection exceptions, shutdowns and resource limits are unavailability', () => {
    for (const err of [new Error('Connection terminated unexpectedly'), serverError('08006'), serverError('57P01'), serverError('57P03'), serverError('53100')]) {
      expect(classifyPostgresFailure(err, 'query')).toMatchObject({ kind: 'retry', outcome: { kind: 'sink-unavailable' } });
    }
  });

  it('a cancelled statement is a timeout; anything else the server says is sink-failed', () => {
    expect(classifyPostgresFailure(serverError('57014'), 'query')).toMatchObject({ outcome: { kind: 'sink-timeout' } });
    expect(classifyPostgresFailure(serverError('42P01', 'relation "emails" does not exist'), 'query'))
      .toEqual({ kind: 'retry', outcome: { status: 'retry', kind: 'sink-failed', reason: 'postgres refused the insert (42P01): relation "emails" does not exist' } });
    expect(classifyPostgresFailure(serverError('40001'), 'query')).toMatchObject({ outcome: { kind: 'sink-failed' } });
  });
});
