// Producers sharing many mailboxes through their leases: three start together and split them;
// one is killed with SIGKILL, and the clock runs until every mailbox it held is in IDLE under a
// live producer (its leases expire first: LEASE_TTL_MS). Then a fourth producer joins and takes
// its share from the two survivors, and every mailbox that stays where it was is watched through
// the producers' /status: released, reconnected or out of IDLE counts as a drop.
import { spawnDaemon, type DaemonProcess } from '../src/ops/local/stack.ts';
import { fairShare } from '../src/producer/leases.ts';
import { allIdle, heldMailboxes, mailboxId, sleep, waitForMailboxes, type HeldMailbox } from './scale-probes.ts';
import type { ScaleStack } from './scale-stack.ts';

export interface TakeoverOptions {
  mailboxes: number;
  /** LEASE_TTL_MS of the producers; the product's default when not given. */
  leaseTtlMs?: number;
  log(line: string): void;
}

export interface TakeoverRun {
  /** Mailboxes the killed producer held. */
  orphaned: number;
  takeoverSeconds: number;
  /** From starting the fourth producer to it holding its share, every one of them in IDLE. */
  joinSeconds: number;
  joinerHeld: number;
  /** Mailboxes held by the same survivor before and after the join. */
  staying: number;
  idleDrops: number;
}

const WAIT_MS = 10 * 60_000;
/** States of a mailbox whose session goes on: IDLE, the periodic re-check, backpressure. */
const SESSION_GOES_ON = new Set(['idle', 'syncing', 'paused']);

/** Every mailbox held once, no producer above its share (split among `live` producers). */
function balanced(total: number, live: number): (held: HeldMailbox[][]) => boolean {
  const share = fairShare(total, live);
  return (held) => held.reduce((n, h) => n + h.length, 0) === total && held.every((h) => h.length > 0 && h.length <= share);
}

const both = (...checks: Array<(held: HeldMailbox[][]) => boolean>) => (held: HeldMailbox[][]) => checks.every((check) => check(held));

export async function takeover(stack: ScaleStack, options: TakeoverOptions): Promise<TakeoverRun> {
  const { log, mailboxes } = options;
  const users = stack.users.slice(0, mailboxes);
  const ids = users.map((u) => `${u}/INBOX`);
  const accountsFile = stack.accountsFile(users);
  const client = stack.redis.client();
  await client.flushall();
  client.disconnect();
  const extra: Record<string, string> = { MAILSTREAM_PREFIX: 'takeover', ...(options.leaseTtlMs ? { LEASE_TTL_MS: String(options.leaseTtlMs) } : {}) };
  const start = (id: string) => spawnDaemon('producer', { env: stack.producerEnv(accountsFile, { ...extra, PRODUCER_ID: id }) });
  const all: DaemonProcess[] = [];
  try {
    const since = Date.now();
    const first = await Promise.all(['p1', 'p2', 'p3'].map(start));
    all.push(...first);
    const settled = await waitForMailboxes(first, both(allIdle(ids), balanced(mailboxes, 3)), { since, timeoutMs: WAIT_MS, what: `${mailboxes} mailboxes split over 3 producers, all in IDLE`, intervalMs: 1000 });
    log(`scale: 3 producers hold ${mailboxes} mailboxes, all in IDLE, after ${settled.toFixed(1)} s`);

    const held = await Promise.all(first.map(heldMailboxes));
    const smallest = Math.min(...held.map((h) => h.length));
    const victim = held.findIndex((h) => h.length === smallest);
    const orphaned = held[victim]!.map(mailboxId);
    const survivors = first.filter((_, i) => i !== victim);
    const killedAt = Date.now();
    await first[victim]!.stop('SIGKILL');
    log(`scale: killed a producer holding ${orphaned.length} mailboxes (SIGKILL)`);
    const takeoverSeconds = await waitForMailboxes(survivors, allIdle(orphaned), { since: killedAt, timeoutMs: WAIT_MS, what: `the killed producer's ${orphaned.length} mailboxes in IDLE elsewhere` });
    log(`scale: taken over and in IDLE after ${takeoverSeconds.toFixed(1)} s`);
    await waitForMailboxes(survivors, balanced(mailboxes, 2), { since: Date.now(), timeoutMs: WAIT_MS, what: `${mailboxes} mailboxes over the 2 survivors` });

    // Where each mailbox is before the join, and every sign of its session ending afterwards.
    const before = new Map<string, { owner: number; token: string; reconnects: number }>();
    (await Promise.all(survivors.map(heldMailboxes))).forEach((list, owner) => {
      for (const m of list) before.set(mailboxId(m), { owner, token: m.token, reconnects: m.reconnects });
    });
    const disturbed = new Set<string>();
    const observe = (heldNow: HeldMailbox[][]) => {
      heldNow.slice(0, survivors.length).forEach((list, owner) => {
        const present = new Set<string>();
        for (const m of list) {
          const id = mailboxId(m);
          present.add(id);
          const was = before.get(id);
          if (was?.owner !== owner) continue;
          if (m.token !== was.token || m.reconnects > was.reconnects || !m.connected || !SESSION_GOES_ON.has(m.state)) disturbed.add(id);
        }
        // Gone from its producer, even for a moment: released (and maybe taken back).
        for (const [id, was] of before) if (was.owner === owner && !present.has(id)) disturbed.add(id);
      });
    };
    const joinedAt = Date.now();
    const joiner = await start('p4');
    all.push(joiner);
    const live = [...survivors, joiner];
    let joinerIdle: ((held: HeldMailbox[][]) => boolean) | undefined;
    const joinSeconds = await waitForMailboxes(live, (heldNow) => {
      observe(heldNow);
      if (!balanced(mailboxes, 3)(heldNow)) return false;
      // Once it holds its share, wait for each of those in IDLE.
      joinerIdle ??= allIdle(heldNow[2]!.map(mailboxId));
      return joinerIdle(heldNow);
    }, { since: joinedAt, timeoutMs: WAIT_MS, what: 'the fourth producer to take its share' });
    // A few more looks: a late release would show now.
    for (let i = 0; i < 8; i++) { await sleep(250); observe(await Promise.all(live.map(heldMailboxes))); }
    const after = await Promise.all(live.map(heldMailboxes));
    const staying = [...before].filter(([id, was]) => after[was.owner]!.some((m) => mailboxId(m) === id)).map(([id]) => id);
    const idleDrops = staying.filter((id) => disturbed.has(id)).length;
    log(`scale: the fourth producer holds ${after[2]!.length} mailboxes after ${joinSeconds.toFixed(1)} s; ${idleDrops} of ${staying.length} staying mailboxes dropped IDLE`);
    return { orphaned: orphaned.length, takeoverSeconds, joinSeconds, joinerHeld: after[2]!.length, staying: staying.length, idleDrops };
  } finally {
    await Promise.all(all.map((p) => p.stop()));
  }
}
