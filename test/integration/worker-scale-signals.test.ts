// How a worker learns of new entries without blocking on every account stream: the signal the
// producer writes to `<prefix>:signals` wakes it (here with a sweep too rare to matter), and
// entries appended with no signal at all (a lost one) are still found by the periodic sweep.
import { randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import { accountKeys, globalKeys } from '../../src/core/keys.ts';
import { startDaemon } from '../helpers/cli.ts';
import { appendEmails } from '../helpers/entries.ts';
import { eventually, freePort } from '../helpers/ports.ts';
import { useWorkerTestbed } from '../helpers/worker-testbed.ts';

const ACCOUNT = 'user@example.com';
const bed = useWorkerTestbed('worker-scale-signals');

/** A worker whose first sweep (at start) is over: from here only signals or later sweeps find mail. */
async function startedWorker(prefix: string, sweepMs: string) {
  const worker = startDaemon(['worker'], {
    ...bed.redisServer.env, MAILSTREAM_PREFIX: prefix, IMAP_USER: ACCOUNT, SINK_URL: bed.receiver.url, HTTP_PORT: String(await freePort()),
    WORKER_SWEEP_MS: sweepMs,
  });
  const stream = accountKeys(prefix, ACCOUNT).stream;
  // The first sweep created the group and read the (empty) stream as this consumer.
  await eventually(async () => ((await bed.redis.xinfo('CONSUMERS', stream, 'workers').catch(() => [])) as unknown[]).length === 1, { what: 'the first sweep done' });
  return worker;
}

it('a signal wakes the worker: new entries are delivered with no sweep to find them', async () => {
  const prefix = `t${randomBytes(4).toString('hex')}`;
  // Ten minutes between sweeps: longer than any wait here.
  const worker = await startedWorker(prefix, '600000');
  const keys = await appendEmails(bed.redis, prefix, ACCOUNT, 5, 100);
  await eventually(() => keys.every((key) => bed.receiver.accepted.includes(key)), { what: 'signalled emails delivered' });
  expect(await bed.redis.xlen(globalKeys(prefix).signals)).toBeGreaterThan(0);
  expect(await worker.stop()).toBe(0);
});

it('entries whose signal was lost are delivered by the sweep', async () => {
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const worker = await startedWorker(prefix, '300');
  const keys = await appendEmails(bed.redis, prefix, ACCOUNT, 5, 200, { signal: false });
  expect(await bed.redis.exists(globalKeys(prefix).signals)).toBe(0);
  await eventually(() => keys.every((key) => bed.receiver.accepted.includes(key)), { what: 'unsignalled emails delivered' });
  await eventually(async () => (await bed.redis.xpending(accountKeys(prefix, ACCOUNT).stream, 'workers'))[0] === 0, { what: 'nothing pending' });
  expect(await worker.stop()).toBe(0);
});
