// Mailbox leases shared by several producers, against a real Redis (or the local Redis Cluster
// with MAILSTREAM_TEST_REDIS=cluster): fair shares, rebalancing when producers join and leave,
// takeover after a lease expires, and fencing tokens that a former holder cannot reuse.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accountKeys, globalKeys } from '../../src/core/keys.ts';
import { createLogger } from '../../src/core/logger.ts';
import { createMetrics } from '../../src/core/metrics.ts';
import { closeRedis, createRedis, type RedisClient } from '../../src/core/redis.ts';
import { LeaseLostError } from '../../src/core/errors.ts';
import { fairShare, LeaseManager, type HeldLease, type MailboxRef } from '../../src/producer/leases.ts';
import { createStreamAppender } from '../../src/producer/stream-append.ts';
import { eventually } from '../helpers/ports.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { startTestRedis, type TestRedis } from '../helpers/test-redis.ts';

const TTL_MS = 1_500;
const logger = createLogger({ level: 'silent' });
let redis: TestRedis;
const clients: RedisClient[] = [];

beforeAll(async () => { redis = await startTestRedis({ aof: false }); });
afterAll(async () => {
  await Promise.all(clients.map((c) => closeRedis(c)));
  await redis?.destroy();
  expect(await killAllTracked()).toBe(0);
});

function connect(): RedisClient {
  const client = createRedis({ url: redis.env.REDIS_URL, clusterNodes: redis.env.REDIS_CLUSTER_NODES?.split(','), name: 'test:leases', maxRetriesPerRequest: 1 });
  clients.push(client);
  return client;
}

function mailboxes(accounts: number, perAccount: number): MailboxRef[] {
  return Array.from({ length: accounts * perAccount }, (_, i) => ({ account: `acct${Math.floor(i / perAccount)}@example.com`, mailbox: `Box${i % perAccount}` }));
}

/** Who polls what, as the runners would see it; counts any moment with two pollers on a mailbox. */
class PollTracker {
  readonly pollers = new Map<string, Set<string>>();
  overlaps = 0;
  handlers(producer: string) {
    return {
      acquired: (lease: HeldLease) => {
        const set = this.pollers.get(`${lease.account}/${lease.mailbox}`) ?? new Set<string>();
        set.add(producer);
        if (set.size > 1) this.overlaps++;
        this.pollers.set(`${lease.account}/${lease.mailbox}`, set);
      },
      stop: async (lease: HeldLease) => { this.pollers.get(`${lease.account}/${lease.mailbox}`)?.delete(producer); },
    };
  }
  polled(): number {
    return [...this.pollers.values()].filter((s) => s.size === 1).length;
  }
}

function manager(prefix: string, id: string, refs: MailboxRef[], tracker: PollTracker, client = connect()) {
  return new LeaseManager({ redis: client, prefix, producerId: id, ttlMs: TTL_MS, mailboxes: refs, handlers: tracker.handlers(id), logger, metrics: createMetrics('producer') });
}

describe('mailbox leases', () => {
  it('fair share is the ceiling of mailboxes over live producers', () => {
    expect(fairShare(20, 3)).toBe(7);
    expect(fairShare(20, 2)).toBe(10);
    expect(fairShare(20, 0)).toBe(20);
    expect(fairShare(3, 5)).toBe(1);
  });

  it('3 producers share 20 mailboxes of 5 accounts: each held once, rebalanced as they join and leave', async () => {
    const prefix = `t${randomBytes(4).toString('hex')}`;
    const refs = mailboxes(5, 4);
    const tracker = new PollTracker();
    const a = manager(prefix, 'a', refs, tracker);
    await a.start();
    expect(a.held()).toHaveLength(20);

    const b = manager(prefix, 'b', refs, tracker);
    const c = manager(prefix, 'c', refs, tracker);
    await Promise.all([b.start(), c.start()]);
    await eventually(() => [a, b, c].every((m) => m.held().length >= 6 && m.held().length <= 7) && tracker.polled() === 20, { what: 'a 7/7/6 split' });
    expect([a, b, c].map((m) => m.held().length).sort()).toEqual([6, 7, 7]);
    const check = connect();
    const values = await Promise.all(refs.map((r) => check.get(accountKeys(prefix, r.account).lease(r.mailbox))));
    const holders = new Map([a, b, c].flatMap((m) => m.held().map((l) => [`${l.account}/${l.mailbox}`, l.token] as const)));
    expect(values).toEqual(refs.map((r) => holders.get(`${r.account}/${r.mailbox}`)));

    // A graceful stop hands its mailboxes over at once (no waiting for expiry).
    await c.stop();
    await eventually(() => a.held().length === 10 && b.held().length === 10, { what: 'a 10/10 split' });
    expect((await check.zrange(globalKeys(prefix).producers, '0', '-1')).sort()).toEqual(['a', 'b']);
    await Promise.all([a.stop(), b.stop()]);
    expect(tracker.overlaps).toBe(0);
    expect(tracker.polled()).toBe(0);
  });

  it('a dead producer\'s leases expire and are taken over; its old tokens renew and release nothing', async () => {
    const prefix = `t${randomBytes(4).toString('hex')}`;
    const refs = mailboxes(2, 3);
    const tracker = new PollTracker();
    const doomedClient = connect();
    const doomed = manager(prefix, 'doomed', refs, tracker, doomedClient);
    await doomed.start();
    const oldLeases = doomed.held();
    expect(oldLeases).toHaveLength(6);

    const survivor = manager(prefix, 'survivor', refs, tracker);
    await survivor.start();
    // The process "dies": its connection drops, nothing is released, its registration lapses.
    doomedClient.disconnect();
    await eventually(() => survivor.held().length === 6, { what: 'takeover of every mailbox' });

    const check = connect();
    for (const old of oldLeases) {
      const now = survivor.held().find((l) => l.account === old.account && l.mailbox === old.mailbox)!;
      // Tokens of an account only grow, and the old value is of no use any more.
      expect(Number(now.token.split(':')[0])).toBeGreaterThan(Number(old.token.split(':')[0]));
      const key = accountKeys(prefix, old.account).lease(old.mailbox);
      expect(await check.renewLease(key, old.token, TTL_MS)).toBe(0);
      expect(await check.releaseLease(key, old.token)).toBe(0);
      expect(await check.get(key)).toBe(now.token);
    }
    await eventually(() => doomed.held().length === 0, { what: 'the dead producer to drop its leases locally' });
    await survivor.stop();
    await doomed.stop();
  });

  it('acquiring a held lease fails and leaves the fencing counter alone', async () => {
    const prefix = `t${randomBytes(4).toString('hex')}`;
    const keys = accountKeys(prefix, 'x@example.com');
    const client = connect();
    const first = await client.acquireLease(keys.lease('INBOX'), keys.fence, 'p1', 10_000);
    expect(first).toBe('1:p1');
    expect(await client.acquireLease(keys.lease('INBOX'), keys.fence, 'p2', 10_000)).toBeNull();
    expect(await client.get(keys.fence)).toBe('1');
    expect(await client.releaseLease(keys.lease('INBOX'), first!)).toBe(1);
    expect(await client.acquireLease(keys.lease('INBOX'), keys.fence, 'p2', 10_000)).toBe('2:p2');
  });

  it('the append script refuses a former holder\'s token: nothing is appended, the mailbox state stays', async () => {
    const prefix = `t${randomBytes(4).toString('hex')}`;
    const keys = accountKeys(prefix, 'fenced@example.com');
    const client = connect();
    const stale = (await client.acquireLease(keys.lease('INBOX'), keys.fence, 'paused', 10_000))!;
    // The paused holder's lease expires and another producer wins it.
    await client.del(keys.lease('INBOX'));
    const current = (await client.acquireLease(keys.lease('INBOX'), keys.fence, 'active', 10_000))!;
    const appender = createStreamAppender(client, keys, { retentionMs: 86_400_000 });
    const batch = (key: string, uid: number, fencingToken: string) => ({
      mailbox: 'INBOX', uidValidity: '7', lastUid: uid, fencingToken,
      entries: [{ uid, key, email: JSON.stringify({ v: 1, key }), internalDateMs: 0, parseError: false, flags: [] }],
    });
    await expect(appender.append(batch('<late@example.com>', 1, stale))).rejects.toBeInstanceOf(LeaseLostError);
    expect(await client.xlen(keys.stream)).toBe(0);
    expect(await client.hget(keys.mailbox('INBOX'), 'lastUid')).toBeNull();

    expect(await appender.append(batch('<fresh@example.com>', 1, current))).toEqual({ appended: 1, skipped: 0 });
    expect(await client.xlen(keys.stream)).toBe(1);
  });
});
