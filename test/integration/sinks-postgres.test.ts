// The PostgreSQL sink called directly against a real server: one INSERT per batch, a redelivery
// is a no-op, a batch refused for its data is retried row by row so only the bad rows are
// permanent, and a server that cannot be reached makes every email wait (sink-unavailable).
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { sampleEmail } from '../helpers/entries.ts';
import { eventually, freePort } from '../helpers/ports.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.ts';
import { migrations } from '../../src/worker/sinks/postgres-migrate.ts';
import { createPostgresSink } from '../../src/worker/sinks/postgres.ts';
import type { Delivery, Sink } from '../../src/worker/sinks/types.ts';

const ACCOUNT = 'user@example.com';
let db: TestDatabase;
let sink: Sink;

beforeAll(async () => {
  db = await createTestDatabase();
  sink = createPostgresSink(db.url);
});

afterAll(async () => {
  await sink?.close();
  await db?.drop();
});

function delivery(n: number, email: string = JSON.stringify(sampleEmail(ACCOUNT, n))): Delivery {
  return { id: `${1_700_000_000_000 + n}-0`, key: `<msg-${n}@example.com>`, email, account: ACCOUNT, previousAttempts: 0 };
}

const live = () => new AbortController().signal;
const count = async () => Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM emails')).rows[0]!.n);

it('writes a batch in one statement and takes a redelivery as a no-op', async () => {
  const batch = Array.from({ length: 50 }, (_, i) => delivery(i));
  expect(await sink.deliver(batch, live())).toEqual(batch.map(() => ({ status: 'delivered' })));
  expect(await count()).toBe(50);
  expect(await sink.deliver(batch.slice(10, 20), live())).toEqual(Array.from({ length: 10 }, () => ({ status: 'delivered' })));
  expect(await count()).toBe(50);
  const row = await db.query('SELECT account, subject, stream_entry_id FROM emails WHERE idempotency_key = $1', ['<msg-7@example.com>']);
  expect(row.rows[0]).toEqual({ account: ACCOUNT, subject: 'Message 7', stream_entry_id: delivery(7).id });
});

it('keeps one row per account when two accounts receive the same message, each with its attachments', async () => {
  // The same key (Message-ID) in two accounts: neither copy is a redelivery of the other.
  const other = 'colleague@example.com';
  const copies = [delivery(50), { ...delivery(50), id: '1700000000999-0', account: other, email: JSON.stringify(sampleEmail(other, 50)) }];
  expect(await sink.deliver(copies, live())).toEqual([{ status: 'delivered' }, { status: 'delivered' }]);
  expect(await sink.deliver(copies.slice(1), live())).toEqual([{ status: 'delivered' }]);
  const rows = await db.query('SELECT account FROM emails WHERE idempotency_key = $1 ORDER BY account', ['<msg-50@example.com>']);
  expect(rows.rows).toEqual([{ account: other }, { account: ACCOUNT }]);
  const attachments = await db.query('SELECT account, attachment_index FROM email_attachments WHERE idempotency_key = $1 ORDER BY account', ['<msg-50@example.com>']);
  expect(attachments.rows).toEqual([{ account: other, attachment_index: 0 }, { account: ACCOUNT, attachment_index: 0 }]);
});

it('migration 004 keys the rows of an older table by account, their attachments kept', async () => {
  const old = await createTestDatabase();
  try {
    for (const m of migrations().filter((m) => m.version < 4)) await old.query(m.sql);
    await old.query(`INSERT INTO emails (idempotency_key, account, mailbox, stream_entry_id, email) VALUES ('<k@x>', 'a@example.com', 'INBOX', '1-0', '{}')`);
    await old.query(`INSERT INTO email_attachments (idempotency_key, attachment_index, sha256) VALUES ('<k@x>', 0, 'ab')`);
    await old.query('CREATE TABLE mailstream_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())');
    await old.query(`INSERT INTO mailstream_migrations (version, name) SELECT unnest($1::int[]), unnest($2::text[])`,
      [migrations().filter((m) => m.version < 4).map((m) => m.version), migrations().filter((m) => m.version < 4).map((m) => m.name)]);
    const upgraded = createPostgresSink(old.url);
    try {
      const copy: Delivery = { id: '1700000000001-0', key: '<k@x>', email: JSON.stringify(sampleEmail('b@example.com', 1, '<k@x>')), account: 'b@example.com', previousAttempts: 0 };
      expect(await upgraded.deliver([copy], live())).toEqual([{ status: 'delivered' }]);
    } finally {
      await upgraded.close();
    }
    expect((await old.query('SELECT account FROM emails ORDER BY account')).rows).toEqual([{ account: 'a@example.com' }, { account: 'b@example.com' }]);
    expect((await old.query('SELECT account, sha256 FROM email_attachments')).rows).toEqual([{ account: 'a@example.com', sha256: 'ab' }]);
  } finally {
    await old.drop();
  }
});

it('a batch refused for some rows\' data delivers the others and refuses only those', async () => {
  const noMailbox = { ...sampleEmail(ACCOUNT, 102) } as Record<string, unknown>;
  delete noMailbox.mailbox;
  const batch = [
    delivery(100),
    delivery(101, JSON.stringify({ ...sampleEmail(ACCOUNT, 101), uid: 'not-a-number' })), // 22P02
    delivery(102, JSON.stringify(noMailbox)), // 23502: mailbox is NOT NULL
    delivery(103),
    delivery(104, '{"this is": not json'), // 22P02 on the jsonb cast
    delivery(105),
  ];
  const outcomes = await sink.deliver(batch, live());
  expect(outcomes.map((o) => o.status)).toEqual(['delivered', 'permanent', 'permanent', 'delivered', 'permanent', 'delivered']);
  expect(outcomes[1]).toMatchObject({ reason: expect.stringMatching(/^postgres refused the email \(22P02\): /) });
  expect(outcomes[2]).toMatchObject({ reason: expect.stringMatching(/^postgres refused the email \(23502\): /) });
  const keys = (await db.query<{ idempotency_key: string }>('SELECT idempotency_key FROM emails WHERE uid >= 100 ORDER BY uid')).rows.map((r) => r.idempotency_key);
  expect(keys).toEqual(['<msg-100@example.com>', '<msg-103@example.com>', '<msg-105@example.com>']);
});

it('a batch of one bad row is permanent without a second try', async () => {
  expect(await sink.deliver([delivery(200, JSON.stringify({ ...sampleEmail(ACCOUNT, 200), size: 'big' }))], live()))
    .toEqual([{ status: 'permanent', reason: expect.stringContaining('(22P02)') }]);
});

it('a server that cannot be reached makes every email of the batch wait as sink-unavailable', async () => {
  const url = new URL(db.url);
  url.port = String(await freePort());
  url.password = 'pg-secret';
  const unreachable = createPostgresSink(url.href);
  try {
    const outcomes = await unreachable.deliver([delivery(300), delivery(301)], live());
    expect(outcomes).toHaveLength(2);
    for (const o of outcomes) expect(o).toMatchObject({ status: 'retry', kind: 'sink-unavailable', reason: expect.stringMatching(/^postgres unreachable: /) });
    expect(JSON.stringify(outcomes)).not.toContain('pg-secret');
    await expect(unreachable.check()).rejects.toThrow();
  } finally {
    await unreachable.close();
    await unreachable.close();
  }
});

it('a schema it cannot write to is sink-failed for the batch, and the emails are not refused', async () => {
  await db.query('ALTER TABLE emails RENAME TO emails_elsewhere');
  try {
    const outcomes = await sink.deliver([delivery(400), delivery(401)], live());
    expect(outcomes).toEqual([0, 1].map(() => ({ status: 'retry', kind: 'sink-failed', reason: expect.stringContaining('(42P01)') })));
  } finally {
    await db.query('ALTER TABLE emails_elsewhere RENAME TO emails');
  }
  expect(await sink.deliver([delivery(400)], live())).toEqual([{ status: 'delivered' }]);
});

it('more batches at once than connections wait their turn, however slow the inserts, instead of failing as unavailable', async () => {
  // A table lock holds the first four inserts; the others wait for a connection past the pool's
  // 5 s connection timeout, which must not turn a busy server into an unavailable one.
  const locker = new pg.Client({ connectionString: db.url });
  await locker.connect();
  try {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE emails IN ACCESS EXCLUSIVE MODE');
    const calls = Array.from({ length: 6 }, (_, i) => sink.deliver([delivery(500 + i)], live()));
    await eventually(async () => Number((await db.query<{ n: string }>(
      "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO emails%'")).rows[0]!.n) === 4, { what: 'four inserts waiting on the lock' });
    await new Promise((r) => setTimeout(r, 6_000));
    await locker.query('COMMIT');
    expect((await Promise.all(calls)).flat()).toEqual(Array.from({ length: 6 }, () => ({ status: 'delivered' })));
  } finally {
    await locker.end();
  }
});
