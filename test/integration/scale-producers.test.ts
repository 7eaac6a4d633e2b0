// Scale-out through the real interface: 3 producer processes share 20 mailboxes of 5 accounts
// (an accounts file, passwords by reference) on a private Dovecot. Each mailbox is polled by one
// producer at a time (checked on the lease history the producers log), a producer killed with
// SIGKILL has its mailboxes taken over, a producer frozen with SIGSTOP past its leases is fenced
// off when it wakes, and every message is in its account's stream exactly once.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Cluster, Redis } from 'ioredis';
import { accountKeys } from '../../src/core/keys.ts';
import type { EmailEntry } from '../../src/core/entry.ts';
import { startDaemon, type Daemon, type LogLine } from '../helpers/cli.ts';
import { generateCorpus } from '../helpers/corpus.ts';
import { startDovecot, type Dovecot } from '../helpers/dovecot.ts';
import { eventually } from '../helpers/ports.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { uniquePrefix } from '../helpers/producer-env.ts';
import { startTestRedis, type TestRedis } from '../helpers/test-redis.ts';

const ACCOUNTS = Array.from({ length: 5 }, (_, i) => ({ user: `acct${i}@example.com`, password: `pw-${i}-secret`, env: `ACCT${i}_PASSWORD` }));
const MAILBOXES = ['INBOX', 'Archive', 'Sent', 'Work'];
const LEASE_TTL_MS = 5_000;

let dovecot: Dovecot;
let redis: TestRedis;
let client: Redis | Cluster;
let env: Record<string, string>;
let prefix: string;
/** Messages seeded so far per account/mailbox, and the seed of the next batch. */
const seeded = new Map<string, number>();
let corpusSeed = 100;

beforeAll(async () => {
  [dovecot, redis] = await Promise.all([
    startDovecot({ users: ACCOUNTS.map(({ user, password }) => ({ user, password })) }),
    startTestRedis({ aof: false }),
  ]);
  client = redis.client();
  const dir = mkdtempSync(join(tmpdir(), 'ms-scale-'));
  const accountsFile = join(dir, 'accounts.json');
  writeFileSync(accountsFile, JSON.stringify({
    defaults: { host: '127.0.0.1', port: dovecot.tlsPort, secure: true, tlsCaFile: dovecot.caFile, auth: 'password', mailboxes: MAILBOXES },
    accounts: ACCOUNTS.map(({ user, env: name }) => ({ user, password: { env: name } })),
  }));
  prefix = uniquePrefix('scale');
  env = {
    ...redis.env,
    MAILSTREAM_PREFIX: prefix,
    ACCOUNTS_FILE: accountsFile,
    ...Object.fromEntries(ACCOUNTS.map((a) => [a.env, a.password])),
    HTTP_PORT: '0',
    START_FROM: 'all',
    LEASE_TTL_MS: String(LEASE_TTL_MS),
    POLL_INTERVAL_MS: '1000',
    RECONNECT_BASE_MS: '100',
    RECONNECT_MAX_MS: '1000',
    PARSE_THREADS: '1',
    FETCH_BATCH_SIZE: '20',
  };
});

afterAll(async () => {
  client?.disconnect();
  await dovecot?.destroy();
  await redis?.destroy();
  expect(await killAllTracked()).toBe(0);
});

function seedAll(perMailbox: number): void {
  for (const { user } of ACCOUNTS) {
    for (const mailbox of MAILBOXES) {
      dovecot.seed(user, mailbox, generateCorpus(perMailbox, { seed: corpusSeed++, tag: `${user}-${mailbox}-${corpusSeed}` }).map((m) => m.raw));
      seeded.set(`${user}/${mailbox}`, (seeded.get(`${user}/${mailbox}`) ?? 0) + perMailbox);
    }
  }
}

const expectedTotal = () => [...seeded.values()].reduce((a, b) => a + b, 0);

async function streamEntries(): Promise<EmailEntry[]> {
  const all: EmailEntry[] = [];
  for (const { user } of ACCOUNTS) {
    for (const [, fields] of await client.xrange(accountKeys(prefix, user).stream, '-', '+')) all.push(JSON.parse(fields[3]!) as EmailEntry);
  }
  return all;
}

async function totalLength(): Promise<number> {
  let n = 0;
  for (const { user } of ACCOUNTS) n += await client.xlen(accountKeys(prefix, user).stream);
  return n;
}

/** Current lease holder (producer id) of every mailbox, straight from Redis. */
async function holders(): Promise<Map<string, string | null>> {
  const out = new Map<string, string | null>();
  for (const { user } of ACCOUNTS) {
    for (const mailbox of MAILBOXES) {
      const value = await client.get(accountKeys(prefix, user).lease(mailbox));
      out.set(`${user}/${mailbox}`, value === null ? null : value.slice(value.indexOf(':') + 1));
    }
  }
  return out;
}

async function heldCounts(): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const owner of (await holders()).values()) if (owner) counts[owner] = (counts[owner] ?? 0) + 1;
  return counts;
}

/** Every stream holds each seeded message once, each mailbox's UIDs 1..N in order. */
function expectExactlyOnce(entries: EmailEntry[]): void {
  expect(entries).toHaveLength(expectedTotal());
  for (const { user } of ACCOUNTS) {
    const mine = entries.filter((e) => e.account === user);
    expect(new Set(mine.map((e) => e.key)).size).toBe(mine.length);
    for (const mailbox of MAILBOXES) {
      const uids = mine.filter((e) => e.mailbox === mailbox).map((e) => e.uid);
      expect(uids, `${user}/${mailbox}`).toEqual(Array.from({ length: seeded.get(`${user}/${mailbox}`)! }, (_, i) => i + 1));
    }
  }
}

interface LeaseEvent { at: number; producer: string; mailbox: string; kind: 'acquired' | 'ended' }

/**
 * The lease history from the producers' logs: a runner starts after `lease acquired` and has
 * stopped before `lease released`. While a producer is dead or frozen (`away`: from, to) it polls
 * nothing: its leases end when it went away, and what it logs about them on waking is ignored.
 */
function leaseHistory(producers: Record<string, Daemon>, away: Record<string, [number, number]> = {}): LeaseEvent[] {
  const events: LeaseEvent[] = [];
  for (const [producer, daemon] of Object.entries(producers)) {
    const [from, to] = away[producer] ?? [Infinity, Infinity];
    const open = new Set<string>();
    for (const line of daemon.logs() as Array<LogLine & { time: string; account?: string; mailbox?: string }>) {
      const at = Date.parse(line.time);
      if (at > from && at <= to) continue;
      const mailbox = `${line.account}/${line.mailbox}`;
      if (at > to && open.size > 0) {
        for (const m of open) events.push({ at: from, producer, mailbox: m, kind: 'ended' });
        open.clear();
      }
      if (line.msg === 'lease acquired') { events.push({ at, producer, mailbox, kind: 'acquired' }); open.add(mailbox); }
      if (line.msg === 'lease released' || line.msg === 'lease lost: another producer holds the mailbox now') { events.push({ at, producer, mailbox, kind: 'ended' }); open.delete(mailbox); }
    }
    if (from !== Infinity) for (const m of open) events.push({ at: from, producer, mailbox: m, kind: 'ended' });
  }
  return events.sort((a, b) => a.at - b.at || (a.kind === 'ended' ? -1 : 1));
}

/** Replays the history: at no moment do two producers hold one mailbox. Returns the acquisitions checked. */
function expectOneHolderAtATime(events: LeaseEvent[]): number {
  const holding = new Map<string, Set<string>>();
  let acquisitions = 0;
  for (const e of events) {
    const set = holding.get(e.mailbox) ?? new Set<string>();
    if (e.kind === 'acquired') {
      expect([...set], `${e.mailbox} acquired by ${e.producer} while held`).toEqual([]);
      set.add(e.producer);
      acquisitions++;
    } else {
      set.delete(e.producer);
    }
    holding.set(e.mailbox, set);
  }
  return acquisitions;
}

function startProducer(id: string): Daemon {
  return startDaemon(['producer'], { ...env, PRODUCER_ID: id });
}

describe('3 producers, 20 mailboxes over 5 accounts', () => {
  /** Every producer started, dead ones included (their history counts). */
  const producers: Record<string, Daemon> = {};
  const alive = new Set<string>();
  const away: Record<string, [number, number]> = {};

  it('share the mailboxes, one producer per mailbox, and ingest everything once', async () => {
    seedAll(25);
    producers.p1 = startProducer('p1');
    // p1 takes every mailbox first (it does not wait for that before it says it runs); then the
    // others join and the leases rebalance.
    await eventually(() => producers.p1!.logs().filter((l) => l.msg === 'lease acquired').length === 20, { what: 'p1 holding all 20 mailboxes' });
    producers.p2 = startProducer('p2');
    producers.p3 = startProducer('p3');
    for (const id of ['p1', 'p2', 'p3']) alive.add(id);
    await eventually(async () => (await totalLength()) >= expectedTotal(), { what: `${expectedTotal()} entries` });
    await eventually(async () => {
      const counts = Object.values(await heldCounts()).sort();
      return counts.length === 3 && counts.join() === '6,7,7';
    }, { what: 'a 7/7/6 split of the leases' });
    expect(expectOneHolderAtATime(leaseHistory(producers))).toBeGreaterThanOrEqual(20);
    expectExactlyOnce(await streamEntries());

    // Every account has an INBOX: the metrics tell them apart by the account label, and what the
    // three producers counted adds up to what was ingested.
    const appended = new Map<string, number>();
    for (const daemon of Object.values(producers)) {
      const url = (await daemon.waitForLog((l) => l.msg === 'health and metrics listening')).url as string;
      const text = await (await fetch(`${url}/metrics`)).text();
      for (const [, labels, value] of text.matchAll(/^mailstream_emails_appended_total\{(.*)\} (\d+)$/gm)) {
        appended.set(labels!, (appended.get(labels!) ?? 0) + Number(value));
      }
    }
    expect([...appended.keys()].filter((l) => l.includes('mailbox="INBOX"')).sort())
      .toEqual(ACCOUNTS.map((a) => `account="${a.user}",mailbox="INBOX"`).sort());
    expect(appended.size).toBe(20);
    expect([...appended.values()].reduce((a, b) => a + b, 0)).toBe(expectedTotal());
  });

  it('kill -9 of a producer: its mailboxes are taken over, nothing lost, nothing appended twice', async () => {
    const victim = Object.entries(await heldCounts()).find(([, n]) => n > 0)![0];
    const orphaned = [...(await holders())].filter(([, owner]) => owner === victim).map(([mailbox]) => mailbox);
    seedAll(5); // arrives while the victim still polls its share
    const killedAt = Date.now();
    await producers[victim]!.stop('SIGKILL');
    seedAll(5); // arrives while nobody polls the victim's mailboxes
    await eventually(async () => {
      const now = await holders();
      return orphaned.every((m) => now.get(m) && now.get(m) !== victim) && Object.values(await heldCounts()).sort().join() === '10,10';
    }, { what: `takeover of ${victim}'s ${orphaned.length} mailboxes` });
    await eventually(async () => (await totalLength()) >= expectedTotal(), { what: `${expectedTotal()} entries` });
    away[victim] = [killedAt, Infinity];
    alive.delete(victim);
    expectOneHolderAtATime(leaseHistory(producers, away));
    expectExactlyOnce(await streamEntries());
  });

  it('a producer frozen past its leases is fenced off when it wakes: it stops, appends nothing twice', async () => {
    const [frozen, other] = [...alive] as [string, string];
    const frozenDaemon = producers[frozen]!;
    const frozenMailboxes = [...(await holders())].filter(([, owner]) => owner === frozen).map(([mailbox]) => mailbox);
    expect(frozenMailboxes.length).toBe(10);
    const frozenAt = Date.now();
    frozenDaemon.tracked.child.kill('SIGSTOP');
    await eventually(async () => (await heldCounts())[other] === 20, { what: `${other} to take every mailbox over` });
    // New mail in the frozen producer's mailboxes: its IDLE sessions are told, but it cannot act yet.
    seedAll(3);
    await eventually(async () => (await totalLength()) >= expectedTotal(), { what: `${expectedTotal()} entries` });
    const linesBefore = frozenDaemon.logs().length;
    frozenDaemon.tracked.child.kill('SIGCONT');
    // On waking it finds its leases gone (renewal refused or overdue, or the append refused the
    // stale token), stops those runners, then rebalancing hands half of the mailboxes back to it.
    const dropped = () => frozenDaemon.logs().slice(linesBefore).filter((l) => l.msg === 'lease lost: another producer holds the mailbox now');
    await eventually(() => dropped().length === frozenMailboxes.length, { what: 'the woken producer to drop all its old leases' });
    const wokenAt = Math.max(...dropped().map((l) => Date.parse(l.time as string)));
    await eventually(async () => Object.values(await heldCounts()).sort().join() === '10,10', { what: 'a 10/10 split again' });
    seedAll(2);
    await eventually(async () => (await totalLength()) >= expectedTotal(), { what: `${expectedTotal()} entries` });
    away[frozen] = [frozenAt, wokenAt];
    expect(expectOneHolderAtATime(leaseHistory(producers, away))).toBeGreaterThanOrEqual(40);
    expectExactlyOnce(await streamEntries());
    for (const id of alive) expect(await producers[id]!.stop('SIGTERM')).toBe(0);
    // A graceful stop gives every lease back.
    expect([...(await holders()).values()].every((owner) => owner === null)).toBe(true);
  });
});
