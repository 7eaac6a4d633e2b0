// The JSONL sink called directly on real files: a batch is one write and one fsync, batches from
// several account loops never interleave, a file that cannot be written (a full disk, a path that
// is not a directory) makes every email wait, and a half-written line never swallows the next.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { createJsonlSink } from '../../src/worker/sinks/jsonl.ts';
import type { Delivery } from '../../src/worker/sinks/types.ts';

const dir = mkdtempSync(join(tmpdir(), 'ms-jsonl-sink-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const live = () => new AbortController().signal;

function delivery(n: number, email = JSON.stringify({ key: `<msg-${n}@example.com>`, n, text: 'x'.repeat(2_000) })): Delivery {
  return { id: `${1_700_000_000_000 + n}-0`, key: `<msg-${n}@example.com>`, email, account: 'user@example.com', previousAttempts: 0 };
}

const lines = (path: string) => readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { n: number });

it('appends a batch as one line per email; concurrent batches stay whole lines', async () => {
  const path = join(dir, 'nested', 'out.jsonl');
  const sink = createJsonlSink(pathToFileURL(path).href);
  await sink.check();
  // Batches of ~1 MB (more than one write's chunk) from three loops at once.
  const numbers = [0, 1, 2].map((loop) => Array.from({ length: 500 }, (_, i) => loop * 1_000 + i));
  const outcomes = await Promise.all(numbers.map((batch) => sink.deliver(batch.map((n) => delivery(n)), live())));
  expect(outcomes.flat().every((o) => o.status === 'delivered')).toBe(true);
  const written = lines(path).map((l) => l.n);
  expect(written).toHaveLength(1_500);
  // Each batch is contiguous, in its order.
  for (const batch of numbers) {
    const start = written.indexOf(batch[0]!);
    expect(written.slice(start, start + batch.length)).toEqual(batch);
  }
  await sink.close();
  await sink.close();
});

it('writes an email spread over several lines as one line; one that is not JSON is refused alone', async () => {
  const path = join(dir, 'pretty.jsonl');
  const sink = createJsonlSink(pathToFileURL(path).href);
  const outcomes = await sink.deliver([delivery(1, '{\n  "n": 1\n}'), delivery(2, '{\n broken'), delivery(3)], live());
  expect(outcomes.map((o) => o.status)).toEqual(['delivered', 'permanent', 'delivered']);
  expect(lines(path).map((l) => l.n)).toEqual([1, 3]);
  await sink.close();
});

it('a full disk makes every email of the batch wait as sink-unavailable', async () => {
  const sink = createJsonlSink('file:///dev/full');
  const outcomes = await sink.deliver([delivery(1), delivery(2)], live());
  expect(outcomes).toEqual([1, 2].map(() => ({ status: 'retry', kind: 'sink-unavailable', reason: 'cannot append to /dev/full: ENOSPC' })));
  await sink.close();
});

it('a path that cannot be created is sink-unavailable, and /ready hears of it', async () => {
  const blocker = join(dir, 'a-file');
  writeFileSync(blocker, 'not a directory');
  const sink = createJsonlSink(pathToFileURL(join(blocker, 'out.jsonl')).href);
  const [outcome] = await sink.deliver([delivery(1)], live());
  expect(outcome).toMatchObject({ status: 'retry', kind: 'sink-unavailable', reason: expect.stringMatching(/^cannot append to .*a-file\/out\.jsonl: E(NOTDIR|EXIST)$/) });
  await expect(sink.check()).rejects.toThrow();
  await sink.close();
});

it('a file ending in the middle of a line (a write cut short) gets the next batch on a line of its own', async () => {
  const path = join(dir, 'cut.jsonl');
  writeFileSync(path, `${JSON.stringify({ n: 0 })}\n{"n": 1, "text": "cut sho`);
  const sink = createJsonlSink(pathToFileURL(path).href);
  expect(await sink.deliver([delivery(2), delivery(3)], live())).toEqual([{ status: 'delivered' }, { status: 'delivered' }]);
  const text = readFileSync(path, 'utf8').split('\n');
  expect(text[1]).toBe('{"n": 1, "text": "cut sho');
  expect(text.slice(2).filter(Boolean).map((l) => (JSON.parse(l) as { n: number }).n)).toEqual([2, 3]);
  await sink.close();
});
