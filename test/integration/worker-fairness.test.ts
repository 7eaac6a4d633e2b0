// One account backfilling a big backlog does not hold up another's new mail: accounts with
// entries waiting take turns, one batch each. One lane (WORKER_CONCURRENCY=1), so the order of
// turns alone decides: the quiet account's emails must reach the sink while most of the backlog
// is still waiting. Order-based: nothing here reads a clock.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { accountKeys } from '../../src/core/keys.ts';
import { startDaemon } from '../helpers/cli.ts';
import { appendEmails } from '../helpers/entries.ts';
import { eventually, freePort } from '../helpers/ports.ts';
import { useWorkerTestbed } from '../helpers/worker-testbed.ts';

const BACKLOG = 3_000;
const BUSY = 'backfill@example.com';
const QUIET = 'quiet@example.com';
const bed = useWorkerTestbed('worker-fairness');

it('a few new emails of a quiet account are delivered long before another account\'s backlog is through', async () => {
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const accountsFile = join(bed.dir, 'accounts.json');
  writeFileSync(accountsFile, JSON.stringify({ accounts: [{ user: BUSY }, { user: QUIET }] }));
  const backlog = await appendEmails(bed.redis, prefix, BUSY, BACKLOG);
  const worker = startDaemon(['worker'], {
    ...bed.redisServer.env, MAILSTREAM_PREFIX: prefix, ACCOUNTS_FILE: accountsFile, SINK_URL: bed.receiver.url, HTTP_PORT: String(await freePort()),
    WORKER_CONCURRENCY: '1', READ_BATCH_SIZE: '50',
  });
  // The backfill is under way: its first batches are through.
  await eventually(() => bed.receiver.accepted.length >= 100, { intervalMs: 10, attempts: 6_000, what: 'the backfill under way' });
  const quiet = await appendEmails(bed.redis, prefix, QUIET, 3, 900_000);
  await eventually(() => bed.receiver.accepted.length === BACKLOG + 3, { what: 'everything delivered' });

  const order = bed.receiver.accepted;
  const lastQuiet = Math.max(...quiet.map((key) => order.indexOf(key)));
  const backlogAfterQuiet = order.slice(lastQuiet + 1).filter((key) => backlog.includes(key)).length;
  // The quiet account waited for a turn or two of the backfill (a batch of 50 each), not for the
  // rest of it: the bulk of the backlog went to the sink after the quiet account's last email.
  expect(backlogAfterQuiet).toBeGreaterThan(BACKLOG / 2);
  expect(new Set(order)).toEqual(new Set([...backlog, ...quiet]));
  for (const account of [BUSY, QUIET]) {
    await eventually(async () => (await bed.redis.xpending(accountKeys(prefix, account).stream, 'workers'))[0] === 0, { what: `nothing pending for ${account}` });
  }
  expect(await worker.stop()).toBe(0);
});
