// The producer role over every configured account: a mailbox runner runs exactly while this
// producer holds the mailbox's lease, and fences its appends with the lease value. With one
// producer it holds every lease; started several times (same accounts), the producers split the
// mailboxes between them and take over those of a producer that stops or dies.
import type { Config } from '../config/load.ts';
import { openBlobStore } from '../core/blobs/open-store.ts';
import type { DaemonContext, RoleParts } from '../core/daemon.ts';
import { globalKeys } from '../core/keys.ts';
import type { AccountSettings } from './account.ts';
import { createBlobHealth } from './blob-health.ts';
import { ConnectLimits } from './connect-limits.ts';
import { LeaseManager, mailboxRefId, type HeldLease } from './leases.ts';
import { createMailboxDirectory, type MailboxDirectory } from './mailbox-directory.ts';
import type { MailboxRunner } from './mailbox-runner.ts';
import { createParsePool, parseThreadCount } from './parse-pool.ts';
import { accountRunners, createAccountContext, type AccountRunners } from './account-runners.ts';
import { createRedisMemoryWatch } from './redis-memory.ts';

interface Running { lease: HeldLease; runner: MailboxRunner }

export async function startLeasedProducer(ctx: DaemonContext, accounts: readonly AccountSettings[]): Promise<RoleParts> {
  const { config, redis, metrics, logger } = ctx;
  // The parse threads write the blobs with clients of their own; this one only probes the store.
  const store = await openBlobStore(config.blobs.store);
  const blobs = store ? createBlobHealth(store, { metrics, logger }) : undefined;
  const memory = createRedisMemoryWatch({ redis, metrics, logger, highWatermark: config.producer.redisMemoryHighWatermark });
  memory.start();
  const pool = createParsePool(parseThreadCount(config.producer.parseThreads), {
    maxBodyBytes: config.producer.maxBodyBytes, inlineBodyBytes: config.blobs.inlineBodyBytes, blobStore: config.blobs.store,
  }, { onBlobWrites: (writes) => blobs?.record(writes) });
  // One pacer and one cap per host for the whole process, whichever accounts share a server.
  const limits = new ConnectLimits(config.producer, { metrics, logger });
  const sets = new Map<string, AccountRunners>();
  for (const account of accounts) {
    sets.set(account.account, accountRunners(createAccountContext({ config, account, redis, logger, metrics, pool, blobs, memory }), limits));
  }
  // Nothing here waits for Redis: a producer started while Redis is away serves /health and a
  // /ready that says why, and gets going when Redis answers (ioredis holds the commands till then).
  redis.sadd(globalKeys(config.prefix).accounts, ...accounts.map((a) => a.account))
    .catch((err: unknown) => logger.warn({ err }, 'accounts not registered for `mailstream status`'));

  // Patterns (IMAP_MAILBOXES=*, Archive/*) become mailboxes as the server lists them.
  const directories = new Map<string, MailboxDirectory>();
  for (const [account, set] of sets) {
    directories.set(account, createMailboxDirectory(set.context, (mailboxes) => {
      leases.setMailboxes(account, mailboxes);
      void leases.balance();
    }));
  }
  const running = new Map<string, Running>();
  const leases: LeaseManager = new LeaseManager({
    redis,
    prefix: config.prefix,
    producerId: config.leases.producerId,
    ttlMs: config.leases.ttlMs,
    mailboxes: [...directories].flatMap(([account, directory]) => directory.mailboxes().map((mailbox) => ({ account, mailbox }))),
    logger,
    metrics,
    handlers: {
      acquired(lease) {
        const runner = sets.get(lease.account)!.runner(lease.mailbox, {
          fencingToken: lease.token,
          // The append refused our token: the lease expired under us and another producer has it.
          onLeaseLost: () => void leases.lost(lease),
        });
        running.set(mailboxRefId(lease), { lease, runner });
        runner.start();
      },
      async stop(lease) {
        const id = mailboxRefId(lease);
        const entry = running.get(id);
        if (!entry || entry.lease.token !== lease.token) return;
        running.delete(id);
        await entry.runner.stop();
      },
    },
  });
  void leases.start();
  for (const directory of directories.values()) directory.start();
  logger.info({ producerId: config.leases.producerId, accounts: accounts.map((a) => a.account), mailboxes: [...directories.values()].reduce((n, d) => n + d.mailboxes().length, 0), parseThreads: pool.threads, blobStore: store ? `${store.kind} ${store.location}` : 'none' }, 'producer running');

  const runners = () => [...running.values()];
  // Breakers are per account; with one account they keep their plain names (imap, redis).
  const breakers = () => ({
    ...Object.fromEntries([...sets].flatMap(([account, set]) =>
      Object.entries(set.breakers()).map(([name, state]) => [sets.size === 1 ? name : `${name}:${account}`, state]))),
    ...(blobs ? { 'blob-store': blobs.status().breaker as string } : {}),
  });
  const redisMemory = () => {
    const last = memory.last();
    return last && { usedBytes: last.usedBytes, maxBytes: last.maxBytes, highWatermark: memory.highWatermark, aboveWatermark: last.ratio !== null && last.ratio >= memory.highWatermark };
  };
  const single = accounts.length === 1 ? { account: accounts[0]!.account } : { accounts: accounts.map((a) => a.account) };
  return {
    async ready() {
      const reasons = runners().map((r) => r.runner.notReadyReason()).filter((r): r is string => r !== undefined);
      for (const [account, set] of sets) {
        if (set.context.appendBreaker?.opened) reasons.push(`redis: circuit breaker open (appends of ${account} failing)`);
      }
      for (const directory of directories.values()) {
        const reason = directory.notReadyReason();
        if (reason) reasons.push(reason);
      }
      const blobReason = blobs?.notReadyReason();
      if (blobReason) reasons.push(blobReason);
      return { ready: reasons.length === 0, reasons };
    },
    async status() {
      return {
        ...single,
        producerId: config.leases.producerId,
        liveProducers: leases.liveProducers(),
        breakers: breakers(),
        blobStore: blobs ? blobs.status() : { kind: 'none' },
        redisMemory: redisMemory(),
        connections: limits.status(),
        mailboxes: runners().map((r) => ({ account: r.lease.account, token: r.lease.token, ...r.runner.status() })),
      };
    },
    heartbeat: () => ({
      ...single,
      producerId: config.leases.producerId,
      breakers: breakers(),
      mailboxes: runners().map((r) => ({ account: r.lease.account, mailbox: r.runner.mailbox, state: r.runner.status().state })),
    }),
    async stop() {
      memory.stop();
      await Promise.all([...directories.values()].map((d) => d.stop()));
      await leases.stop();
      limits.close();
      await pool.close();
      await store?.close();
    },
  };
}
