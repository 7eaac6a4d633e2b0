// Several producers share the mailboxes of every account: each mailbox is polled by the one
// producer holding its lease (SET NX PX in acquireLease-2.lua, renewed every third of its length).
// The lease value is also the fencing token the append script checks, so a producer that was
// paused past its lease (GC, SIGSTOP, a slow host) cannot append once another took over.
// Producers announce themselves in a registry; each holds about its fair share
// (ceil(mailboxes / live producers)), releases the surplus when producers join, and takes free
// mailboxes when producers leave or die (a dead producer's leases simply expire).
import type { Result } from 'ioredis';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import { accountKeys, globalKeys } from '../core/keys.ts';
import type { RedisClient } from '../core/redis.ts';

declare module 'ioredis' {
  interface RedisCommander<Context> {
    acquireLease(leaseKey: string, fenceKey: string, producerId: string, ttlMs: number): Result<string | null, Context>;
    renewLease(leaseKey: string, token: string, ttlMs: number): Result<number, Context>;
    releaseLease(leaseKey: string, token: string): Result<number, Context>;
    registerProducer(registryKey: string, producerId: string, ttlMs: number): Result<string[], Context>;
  }
}

export interface MailboxRef { account: string; mailbox: string }

export interface HeldLease extends MailboxRef {
  /** The lease value: pass it to the append script as the fencing token. */
  token: string;
  acquiredAt: number;
}

export interface LeaseHandlers {
  /** Start polling the mailbox; must not wait for the poll itself. */
  acquired(lease: HeldLease): void;
  /** Stop polling (resolve once no more appends will be attempted). Called before a release and on loss. */
  stop(lease: HeldLease, reason: 'lost' | 'released'): Promise<void>;
}

export interface LeaseManagerOptions {
  redis: RedisClient;
  prefix: string;
  producerId: string;
  ttlMs: number;
  mailboxes: readonly MailboxRef[];
  handlers: LeaseHandlers;
  logger: Logger;
  metrics?: Metrics;
}

interface Slot { lease: HeldLease; renewedAt: number; releasing: boolean; renewing: boolean }

/** A Redis call that hangs (connection lost, commands queued) must not stall the lease loop. */
function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`Redis did not answer within ${ms} ms`)), ms); });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** One mailbox of one account, as a map key. */
export const mailboxRefId = (ref: MailboxRef): string => `${ref.account}\u0000${ref.mailbox}`;

/** How many leases one of `producers` live producers should hold. */
export function fairShare(mailboxes: number, producers: number): number {
  return Math.ceil(mailboxes / Math.max(1, producers));
}

export class LeaseManager {
  readonly #o: LeaseManagerOptions;
  readonly #held = new Map<string, Slot>();
  /** Every mailbox to share out; a pattern in IMAP_MAILBOXES changes it as the server's folders change. */
  #mailboxes: readonly MailboxRef[];
  #producers = 1;
  #renewTimer: NodeJS.Timeout | undefined;
  #balanceTimer: NodeJS.Timeout | undefined;
  #balancing: Promise<void> | undefined;
  /** No more acquiring or rebalancing (stop() began). */
  #stopped = false;
  /** Every lease released: renewals end too. */
  #closed = false;

  readonly #every: number;

  constructor(options: LeaseManagerOptions) {
    this.#o = options;
    this.#mailboxes = options.mailboxes;
    this.#every = Math.max(100, Math.floor(options.ttlMs / 3));
    for (const event of ['acquired', 'released', 'lost']) options.metrics?.leaseChanges.inc({ event }, 0);
    for (const account of new Set(options.mailboxes.map((m) => m.account))) options.metrics?.leasesHeld.set({ account }, 0);
  }

  /**
   * Registers, takes a first share of mailboxes at once, then keeps renewing and rebalancing. The
   * promise settles after the first round (it never rejects); the producer does not wait for it,
   * so a Redis that is away holds nothing up.
   */
  start(): Promise<void> {
    const first = this.balance();
    const every = this.#every;
    this.#renewTimer = setInterval(() => void this.renew(), every);
    // Rebalancing at a slightly different, jittered pace keeps producers from moving in lockstep.
    const schedule = () => {
      this.#balanceTimer = setTimeout(() => { void this.balance().finally(() => { if (!this.#stopped) schedule(); }); }, every + Math.floor(Math.random() * every / 2));
    };
    schedule();
    return first;
  }

  held(): HeldLease[] {
    return [...this.#held.values()].map((s) => s.lease);
  }

  liveProducers(): number {
    return this.#producers;
  }

  /** Replaces the mailboxes of one account; the next round takes the new ones and releases those gone. */
  setMailboxes(account: string, mailboxes: readonly string[]): void {
    this.#mailboxes = [...this.#mailboxes.filter((m) => m.account !== account), ...mailboxes.map((mailbox) => ({ account, mailbox }))];
  }

  /** The runner saw the append refuse its token: forget that lease so the mailbox can be won back later. */
  async lost(lease: HeldLease): Promise<void> {
    const slot = this.#held.get(mailboxRefId(lease));
    if (slot && slot.lease.token === lease.token) await this.#drop(slot, 'lost');
  }

  /**
   * Renews every held lease. One that is no longer ours stops; so does one not renewed for a
   * whole lease length (Redis away or too slow), since by then another producer may hold it.
   */
  async renew(): Promise<void> {
    if (this.#closed) return;
    const { redis, prefix, ttlMs } = this.#o;
    const now = Date.now();
    await Promise.all([...this.#held.values()].map(async (slot) => {
      if (now - slot.renewedAt >= ttlMs) return this.#drop(slot, 'lost');
      if (slot.renewing) return;
      slot.renewing = true;
      const key = accountKeys(prefix, slot.lease.account).lease(slot.lease.mailbox);
      try {
        // Counted from when the renewal was sent: Redis starts the new period later than that.
        if (await within(redis.renewLease(key, slot.lease.token, ttlMs), this.#every) === 1) slot.renewedAt = now;
        else await this.#drop(slot, 'lost');
      } catch (err) {
        this.#o.logger.warn({ err, account: slot.lease.account, mailbox: slot.lease.mailbox }, 'lease not renewed; retrying');
      } finally {
        slot.renewing = false;
      }
    }));
  }

  /** One rebalancing round: register, release the surplus above the fair share, take free mailboxes up to it. */
  balance(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    this.#balancing ??= this.#balance().catch((err: unknown) => {
      this.#o.logger.warn({ err }, 'lease rebalancing failed; retrying');
    }).finally(() => { this.#balancing = undefined; });
    return this.#balancing;
  }

  async #balance(): Promise<void> {
    const { redis, prefix, producerId, ttlMs } = this.#o;
    const mailboxes = this.#mailboxes;
    const live = await within(redis.registerProducer(globalKeys(prefix).producers, producerId, ttlMs), ttlMs);
    this.#producers = Math.max(1, live.length);
    this.#o.metrics?.producersLive.set(this.#producers);
    const share = fairShare(mailboxes.length, this.#producers);

    const listed = new Set(mailboxes.map(mailboxRefId));
    const gone = [...this.#held.values()].filter((s) => !s.releasing && !listed.has(mailboxRefId(s.lease)));
    await Promise.all(gone.map((slot) => this.#release(slot)));
    const keeping = [...this.#held.values()].filter((s) => !s.releasing);
    const surplus = keeping.length - share;
    if (surplus > 0) {
      // Give up the most recently won first: older leases have warm IMAP sessions.
      const toRelease = keeping.sort((a, b) => b.lease.acquiredAt - a.lease.acquiredAt).slice(0, surplus);
      await Promise.all(toRelease.map((slot) => this.#release(slot)));
      return;
    }
    let room = share - keeping.length;
    if (room <= 0) return;
    // Start at a random place so producers that look at the same moment do not race for the same
    // keys; ask for `room` free mailboxes at a time, in one round trip.
    const offset = Math.floor(Math.random() * mailboxes.length);
    const candidates = mailboxes.map((_, i) => mailboxes[(offset + i) % mailboxes.length]!).filter((ref) => !this.#held.has(mailboxRefId(ref)));
    while (room > 0 && candidates.length > 0 && !this.#stopped) {
      const tries = candidates.splice(0, room);
      const sentAt = Date.now();
      // A lease won by a call that timed out is unknown to us and simply expires.
      const tokens = await Promise.all(tries.map((ref) => {
        const keys = accountKeys(prefix, ref.account);
        return within(redis.acquireLease(keys.lease(ref.mailbox), keys.fence, producerId, ttlMs), ttlMs).catch(() => null);
      }));
      tries.forEach((ref, i) => {
        const token = tokens[i];
        if (!token) return;
        const lease: HeldLease = { ...ref, token, acquiredAt: sentAt };
        this.#held.set(mailboxRefId(ref), { lease, renewedAt: sentAt, releasing: false, renewing: false });
        room--;
        this.#count(ref.account, 'acquired');
        this.#o.logger.info({ account: ref.account, mailbox: ref.mailbox, lease: token, producers: this.#producers, share }, 'lease acquired');
        this.#o.handlers.acquired(lease);
      });
    }
  }

  async #release(slot: Slot): Promise<void> {
    slot.releasing = true;
    const { lease } = slot;
    // Polling stops before the lease goes, so two producers never poll the mailbox at once. The
    // line is logged before the key is deleted, so no other producer's `lease acquired` can come
    // before it in the logs.
    await this.#o.handlers.stop(lease, 'released');
    const mine = this.#held.get(mailboxRefId(lease)) === slot;
    if (mine) this.#o.logger.info({ account: lease.account, mailbox: lease.mailbox, lease: lease.token }, 'lease released');
    const key = accountKeys(this.#o.prefix, lease.account).lease(lease.mailbox);
    await within(this.#o.redis.releaseLease(key, lease.token), this.#every).catch((err: unknown) => {
      this.#o.logger.warn({ err, account: lease.account, mailbox: lease.mailbox }, 'lease not deleted from Redis; it will expire');
    });
    if (!mine || this.#held.get(mailboxRefId(lease)) !== slot) return;
    this.#held.delete(mailboxRefId(lease));
    this.#count(lease.account, 'released');
  }

  async #drop(slot: Slot, reason: 'lost'): Promise<void> {
    const { lease } = slot;
    if (this.#held.get(mailboxRefId(lease)) !== slot) return;
    this.#held.delete(mailboxRefId(lease));
    this.#count(lease.account, reason);
    this.#o.logger.warn({ account: lease.account, mailbox: lease.mailbox, lease: lease.token }, 'lease lost: another producer holds the mailbox now');
    // A release in progress is already stopping the runner.
    if (!slot.releasing) await this.#o.handlers.stop(lease, reason);
  }

  #count(account: string, event: 'acquired' | 'released' | 'lost'): void {
    const m = this.#o.metrics;
    if (!m) return;
    m.leaseChanges.inc({ event });
    m.leasesHeld.set({ account }, [...this.#held.values()].filter((s) => s.lease.account === account).length);
  }

  /** Stops every runner, gives every lease back and leaves the registry, so others take over at once. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearTimeout(this.#balanceTimer);
    await this.#balancing;
    // Renewals go on while runners finish their batch, so the leases do not lapse under them.
    await Promise.all([...this.#held.values()].filter((s) => !s.releasing).map((slot) => this.#release(slot)));
    this.#closed = true;
    clearInterval(this.#renewTimer);
    await within(this.#o.redis.zrem(globalKeys(this.#o.prefix).producers, this.#o.producerId), this.#every).catch(() => undefined);
  }
}
