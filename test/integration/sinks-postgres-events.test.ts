// The PostgreSQL sink and TRACK_CHANGES' events, against a real server: flags, labels, place and
// deleted_at follow the events; an event for an email whose row is not there yet waits (retry)
// and applies once the email is in, also when both come in one batch; an event retried after a
// later one does not put older flags or an older place back; a move's two halves give the same
// row whichever arrives first.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { sampleEmail } from '../helpers/entries.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.ts';
import { deletedEvent, movedEvent, updatedEvent } from '../../src/producer/change-events.ts';
import type { ChangeEvent } from '../../src/core/entry.ts';
import { createPostgresSink } from '../../src/worker/sinks/postgres.ts';
import type { Delivery, Sink } from '../../src/worker/sinks/types.ts';

const ACCOUNT = 'user@example.com';
const SEEN = '2026-04-01T12:00:00.000Z';
let db: TestDatabase;
let sink: Sink;
let seq = 0;

beforeAll(async () => {
  db = await createTestDatabase();
  sink = createPostgresSink(db.url);
});

afterAll(async () => {
  await sink?.close();
  await db?.drop();
});

/** Stream ids rise with each delivery made, as the stream's do. */
const nextId = () => `${1_700_000_000_000 + ++seq}-0`;
const live = () => new AbortController().signal;
const newMail = (n: number): Delivery => ({ id: nextId(), key: `<msg-${n}@example.com>`, email: JSON.stringify(sampleEmail(ACCOUNT, n)), account: ACCOUNT, previousAttempts: 0, type: 'message.new' });
const change = (event: ChangeEvent, id = nextId()): Delivery => ({ id, key: event.key, email: JSON.stringify(event), account: ACCOUNT, previousAttempts: 0, type: event.type });
const at = (n: number, mailbox = 'INBOX', uid = n) => ({ account: ACCOUNT, mailbox, uidValidity: '1', uid });
const seen = (n: number, flags: string[], labels: string[] | null = null) => ({ key: `<msg-${n}@example.com>`, flags, labels });
const row = async (n: number) => (await db.query('SELECT mailbox, uid, flags, labels, deleted_at FROM emails WHERE idempotency_key = $1', [`<msg-${n}@example.com>`])).rows[0];

it('keeps flags, labels, place and deleted_at current, an email and its change in one batch included', async () => {
  const batch = [
    newMail(1), newMail(2),
    change(updatedEvent(at(1), seen(1, ['\\Seen'], ['Clients']), { modseq: '10' }, SEEN)),
    change(deletedEvent(at(2), '<msg-2@example.com>', SEEN)),
  ];
  expect(await sink.deliver(batch, live())).toEqual(batch.map(() => ({ status: 'delivered' })));
  expect(await row(1)).toEqual({ mailbox: 'INBOX', uid: '1', flags: ['\\Seen'], labels: ['Clients'], deleted_at: null });
  expect((await row(2))!.deleted_at).toEqual(new Date(SEEN));
  // A redelivered event changes nothing.
  expect(await sink.deliver([batch[2]!], live())).toEqual([{ status: 'delivered' }]);
});

it('an event changes its own account\'s copy of a message only', async () => {
  const other = 'colleague@example.com';
  const otherCopy: Delivery = { ...newMail(20), id: nextId(), account: other, email: JSON.stringify(sampleEmail(other, 20)) };
  expect(await sink.deliver([newMail(20), otherCopy], live())).toEqual([{ status: 'delivered' }, { status: 'delivered' }]);
  expect(await sink.deliver([change(deletedEvent(at(20), '<msg-20@example.com>', SEEN))], live())).toEqual([{ status: 'delivered' }]);
  const rows = await db.query('SELECT account, deleted_at FROM emails WHERE idempotency_key = $1 ORDER BY account', ['<msg-20@example.com>']);
  expect(rows.rows).toEqual([{ account: other, deleted_at: null }, { account: ACCOUNT, deleted_at: new Date(SEEN) }]);
});

it('an event for an email not in the table yet waits, and applies once it is', async () => {
  const early = change(updatedEvent(at(3), seen(3, ['\\Flagged']), { modseq: '11' }, SEEN));
  const [outcome] = await sink.deliver([early], live());
  expect(outcome).toMatchObject({ status: 'retry', reason: expect.stringMatching(/<msg-3@example.com> is not in the table yet/) });
  expect(await sink.deliver([newMail(3)], live())).toEqual([{ status: 'delivered' }]);
  expect(await sink.deliver([{ ...early, previousAttempts: 1 }], live())).toEqual([{ status: 'delivered' }]);
  expect((await row(3))!.flags).toEqual(['\\Flagged']);
});

it('an event retried after a later one puts nothing older back', async () => {
  await sink.deliver([newMail(4)], live());
  const older = change(updatedEvent(at(4), seen(4, ['\\Seen']), { modseq: '20' }, SEEN));
  const newer = change(updatedEvent(at(4), seen(4, ['\\Answered', '\\Seen']), { modseq: '21' }, SEEN));
  await sink.deliver([newer], live());
  expect(await sink.deliver([older], live())).toEqual([{ status: 'delivered' }]);
  expect((await row(4))!.flags).toEqual(['\\Answered', '\\Seen']);
});

it('a move ends with the row at its new place whichever half comes first', async () => {
  await sink.deliver([newMail(5), newMail(6)], live());
  // 5: the delete from INBOX first, then the arrival in Archive.
  const gone5 = change(deletedEvent(at(5), '<msg-5@example.com>', SEEN));
  const arrived5 = change(movedEvent(at(5, 'Archive', 901), seen(5, ['\\Seen']), SEEN));
  await sink.deliver([gone5, arrived5], live());
  expect(await row(5)).toEqual({ mailbox: 'Archive', uid: '901', flags: ['\\Seen'], labels: null, deleted_at: null });
  // 6: the arrival first (another mailbox's runner was quicker), then the delete from INBOX.
  const arrived6 = change(movedEvent(at(6, 'Archive', 902), seen(6, []), SEEN));
  const gone6 = change(deletedEvent(at(6), '<msg-6@example.com>', SEEN));
  await sink.deliver([arrived6, gone6], live());
  expect(await row(6)).toEqual({ mailbox: 'Archive', uid: '902', flags: [], labels: null, deleted_at: null });
  // Deleted from Archive later: now it is gone.
  await sink.deliver([change(deletedEvent(at(6, 'Archive', 902), '<msg-6@example.com>', SEEN))], live());
  expect((await row(6))!.deleted_at).toEqual(new Date(SEEN));
});

it('refuses an entry typed as an event that is not one, alone', async () => {
  const bad: Delivery = { id: nextId(), key: 'k#updated#x', email: '{"nope":1}', account: ACCOUNT, previousAttempts: 0, type: 'message.updated' };
  const good = change(updatedEvent(at(1), seen(1, []), { modseq: '30' }, SEEN));
  const outcomes = await sink.deliver([bad, good], live());
  expect(outcomes).toEqual([{ status: 'permanent', reason: 'the stream entry\'s email is not a message.updated event' }, { status: 'delivered' }]);
});
