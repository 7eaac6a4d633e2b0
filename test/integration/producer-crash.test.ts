// kill -9 of the producer in the middle of a sync, at both dangerous points (after a batch was
// fetched but before it was appended; right after an append), then a restart: every message is
// in the stream exactly once, in UID order.
import { describe, expect, it } from 'vitest';
import { startTestRedis } from '../helpers/test-redis.ts';
import { generateCorpus } from '../helpers/corpus.ts';
import { startDaemon } from '../helpers/cli.ts';
import { eventually } from '../helpers/ports.ts';
import { producerEnv } from '../helpers/producer-env.ts';
import { useProducerTestbed } from '../helpers/producer-testbed.ts';
import { readEntries } from '../helpers/stream-read.ts';
import { accountKeys } from '../../src/core/keys.ts';

const USER = 'user@example.com';
const bed = useProducerTestbed({ startRedis: () => startTestRedis({ aof: true }) });

describe('producer killed with SIGKILL mid-sync', () => {
  for (const point of ['after-fetch:3', 'after-append:4']) {
    it(`loses nothing and appends nothing twice (crash ${point})`, async () => {
      const mailbox = `Crash${point.replace(/\W/g, '')}`;
      const corpus = generateCorpus(400, { seed: 31, tag: mailbox });
      bed.dovecot.seed(USER, mailbox, corpus.map((m) => m.raw));
      const env = producerEnv({ redisUrl: bed.redisServer.url, dovecot: bed.dovecot, mailboxes: [mailbox], extra: { START_FROM: 'all', FETCH_BATCH_SIZE: '40' } });
      const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);

      const crashing = startDaemon(['producer'], { ...env, FAULT_INJECTION: point });
      expect(await crashing.tracked.exited).toBe('SIGKILL');
      const before = await bed.redis.xlen(keys.stream);
      expect(before).toBeGreaterThan(0);
      expect(before).toBeLessThan(corpus.length);

      const restarted = startDaemon(['producer'], env);
      await eventually(async () => Number(await bed.redis.hget(keys.mailbox(mailbox), 'lastUid')) === corpus.length, { what: 'the whole mailbox' });
      const entries = await readEntries(bed.redis, keys.stream);
      expect(entries.map((e) => e.uid)).toEqual(corpus.map((_, i) => i + 1));
      expect(new Set(entries.map((e) => e.key)).size).toBe(corpus.length);
      expect(await restarted.stop()).toBe(0);
    });
  }

  it('SIGTERM mid-sync exits 0 after the batch in hand, and a restart continues without loss or repeats', async () => {
    const corpus = generateCorpus(400, { seed: 33, tag: 'sigterm' });
    bed.dovecot.seed(USER, 'Graceful', corpus.map((m) => m.raw));
    const env = producerEnv({ redisUrl: bed.redisServer.url, dovecot: bed.dovecot, mailboxes: ['Graceful'], extra: { START_FROM: 'all', FETCH_BATCH_SIZE: '20' } });
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);
    const first = startDaemon(['producer'], env);
    await eventually(async () => (await bed.redis.xlen(keys.stream)) >= 40, { what: 'a few batches', intervalMs: 10, attempts: 6000 });
    expect(await first.stop('SIGTERM')).toBe(0);
    expect(first.logs().some((l) => l.msg === 'stopped')).toBe(true);
    // Whatever was appended is what the state says was read: nothing half-done.
    const appended = await bed.redis.xlen(keys.stream);
    expect(Number(await bed.redis.hget(keys.mailbox('Graceful'), 'lastUid'))).toBe(appended);

    const second = startDaemon(['producer'], env);
    await eventually(async () => Number(await bed.redis.hget(keys.mailbox('Graceful'), 'lastUid')) === corpus.length, { what: 'the whole mailbox' });
    const entries = await readEntries(bed.redis, keys.stream);
    expect(entries.map((e) => e.uid)).toEqual(corpus.map((_, i) => i + 1));
    expect(await second.stop()).toBe(0);
  });
});
