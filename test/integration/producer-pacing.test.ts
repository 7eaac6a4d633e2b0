// A producer holding many mailboxes opens them politely, against a real Dovecot: 30 mailboxes (3
// accounts of 10) with IMAP_CONNECT_RATE=5 start their logins no faster than the token bucket
// allows in any window (counted on the logins the producer records) and all reach IDLE; after
// Dovecot restarts the reconnects are spread the same way; with IMAP_MAX_CONNECTIONS_PER_HOST=3
// Dovecot never sees more than 3 of the producer's connections to 10 mailboxes (`doveadm who`, polled) and the
// mailboxes take turns, so every one of them is still read.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { accountKeys } from '../../src/core/keys.ts';
import { connectBurst } from '../../src/producer/connect-pacer.ts';
import { startDaemon, type Daemon } from '../helpers/cli.ts';
import { generateCorpus } from '../helpers/corpus.ts';
import { eventually } from '../helpers/ports.ts';
import { uniquePrefix } from '../helpers/producer-env.ts';
import { metricValue } from '../helpers/stream-read.ts';
import { useProducerTestbed } from '../helpers/producer-testbed.ts';
import { startTestRedis } from '../helpers/test-redis.ts';

const ACCOUNTS = Array.from({ length: 3 }, (_, i) => ({ user: `pace${i}@example.com`, password: `pw-pace-${i}`, env: `PACE${i}_PASSWORD` }));
const MAILBOXES = ['INBOX', ...Array.from({ length: 9 }, (_, i) => `Box${i}`)];
const RATE = 5;

const bed = useProducerTestbed({
  dovecot: { users: ACCOUNTS.map(({ user, password }) => ({ user, password })) },
  startRedis: () => startTestRedis({ aof: false }),
});
let baseEnv: Record<string, string>;
/** An accounts file of the first account alone: 10 mailboxes. */
let oneAccountFile: string;
let corpusSeed = 500;

/** An accounts file for the local Dovecot: these accounts, every one of MAILBOXES. */
function writeAccountsFile(path: string, accounts: typeof ACCOUNTS): string {
  writeFileSync(path, JSON.stringify({
    defaults: { host: '127.0.0.1', port: bed.dovecot.tlsPort, secure: true, tlsCaFile: bed.dovecot.caFile, auth: 'password', mailboxes: MAILBOXES },
    accounts: accounts.map(({ user, env: name }) => ({ user, password: { env: name } })),
  }));
  return path;
}

beforeAll(() => {
  for (const { user } of ACCOUNTS) for (const mailbox of MAILBOXES) bed.dovecot.createMailbox(user, mailbox);
  const dir = mkdtempSync(join(tmpdir(), 'ms-pacing-'));
  const accountsFile = writeAccountsFile(join(dir, 'accounts.json'), ACCOUNTS);
  oneAccountFile = writeAccountsFile(join(dir, 'one-account.json'), ACCOUNTS.slice(0, 1));
  baseEnv = {
    ...bed.redisServer.env,
    ACCOUNTS_FILE: accountsFile,
    ...Object.fromEntries(ACCOUNTS.map((a) => [a.env, a.password])),
    HTTP_PORT: '0',
    START_FROM: 'all',
    RECONNECT_BASE_MS: '100',
    RECONNECT_MAX_MS: '2000',
    PARSE_THREADS: '1',
    // The pacer's record of each login is a debug line.
    LOG_LEVEL: 'debug',
  };
});

/** Producers a failed test left running, stopped before Dovecot is. */
const producers = new Set<Daemon>();
function running(producer: Daemon): Daemon {
  producers.add(producer);
  return producer;
}

afterEach(async () => {
  for (const producer of producers) await producer.stop();
  producers.clear();
});

interface StatusBody {
  connections: { connectRatePerSecond: number; connectBurst: number; waitingForRate: number; hosts: Array<{ host: string; open: number; cap: number | null; waiting: number }> };
  mailboxes: Array<{ account: string; mailbox: string; state: string; queuedFor: string | null; lastPollAt: number | null; reconnects: number }>;
}

async function listening(producer: Daemon): Promise<string> {
  return (await producer.waitForLog((l) => l.msg === 'health and metrics listening')).url as string;
}

async function status(url: string): Promise<StatusBody> {
  return await (await fetch(`${url}/status`)).json() as StatusBody;
}

/** When each login started, as the producer recorded it (ms). */
function loginTimes(producer: Daemon): number[] {
  return producer.logs().filter((l) => l.msg === 'imap login started').map((l) => l.at as number);
}

/**
 * No window of `ms` holds more logins than the bucket lets through: its burst plus rate x window.
 * One more is allowed because a login is recorded just after its token, and a busy event loop
 * can record one late and the next on time.
 */
function expectPaced(times: number[], rate: number): void {
  const burst = connectBurst(rate);
  for (const ms of [1000, 2000, 4000]) {
    const allowance = burst + (rate * ms) / 1000 + 1;
    for (const start of times) {
      const inWindow = times.filter((t) => t >= start && t < start + ms).length;
      expect(inWindow, `logins within ${ms} ms of ${start}`).toBeLessThanOrEqual(allowance);
    }
  }
  // The same bound seen whole: n logins past the burst take at least (n - burst) / rate seconds.
  const sorted = [...times].sort((a, b) => a - b);
  expect(sorted.at(-1)! - sorted[0]!).toBeGreaterThanOrEqual(((times.length - burst - 1) / rate) * 1000);
}

/** Messages seeded so far per account. */
const seeded = new Map<string, number>();

function seedAll(perMailbox: number, accounts = ACCOUNTS): void {
  for (const { user } of accounts) {
    seeded.set(user, (seeded.get(user) ?? 0) + perMailbox * MAILBOXES.length);
    for (const mailbox of MAILBOXES) {
      bed.dovecot.seed(user, mailbox, generateCorpus(perMailbox, { seed: corpusSeed++, tag: `${user}-${mailbox}-${corpusSeed}` }).map((m) => m.raw));
    }
  }
}

async function totalLength(prefix: string, accounts = ACCOUNTS): Promise<number> {
  let n = 0;
  for (const { user } of accounts) n += await bed.redis.xlen(accountKeys(prefix, user).stream);
  return n;
}

/** Connections Dovecot holds for our users now, one line each in `doveadm who -1`. */
async function dovecotConnections(): Promise<number> {
  const out = await bed.dovecot.doveadm('who', '-1');
  return out.split('\n').filter((line) => ACCOUNTS.some((a) => line.startsWith(a.user))).length;
}

describe('connection pacing (IMAP_CONNECT_RATE)', () => {
  it('30 mailboxes log in no faster than the bucket allows, all reach IDLE, and a Dovecot restart brings them back spread out', async () => {
    const prefix = uniquePrefix('pacing');
    const producer = running(startDaemon(['producer'], { ...baseEnv, MAILSTREAM_PREFIX: prefix, IMAP_CONNECT_RATE: String(RATE) }));
    const url = await listening(producer);
    // While the logins are paced, /status and the gauge show mailboxes waiting for the pacer.
    let sawQueued = false;
    let sawGauge = false;
    await eventually(async () => {
      const body = await status(url);
      if (body.mailboxes.some((m) => m.state === 'queued' && m.queuedFor === 'connect-rate')) sawQueued = true;
      if (metricValue(await (await fetch(`${url}/metrics`)).text(), 'mailstream_imap_connect_waiting', 'reason="rate"') > 0) sawGauge = true;
      return body.mailboxes.length === 30 && body.mailboxes.every((m) => m.state === 'idle');
    }, { what: 'all 30 mailboxes in IDLE', attempts: 1200 });
    expect(sawQueued).toBe(true);
    expect(sawGauge).toBe(true);
    const first = loginTimes(producer);
    expect(first).toHaveLength(30);
    expectPaced(first, RATE);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metricValue(metrics, 'mailstream_imap_connects_total', 'host="127.0.0.1"')).toBe(30);
    expect(metricValue(metrics, 'mailstream_imap_connect_waiting', 'reason="rate"')).toBe(0);
    const body = await status(url);
    expect(body.connections).toMatchObject({ connectRatePerSecond: RATE, connectBurst: connectBurst(RATE), waitingForRate: 0 });
    expect(body.connections.hosts).toEqual([{ host: '127.0.0.1', open: 30, cap: null, waiting: 0 }]);

    await bed.dovecot.restart();
    await eventually(async () => {
      const again = await status(url);
      return again.mailboxes.every((m) => m.reconnects >= 1 && m.state === 'idle');
    }, { what: 'all 30 mailboxes back in IDLE after the restart', attempts: 1200 });
    // Every login after the restart, tries refused while Dovecot was down included.
    const after = loginTimes(producer).slice(30);
    expect(after.length).toBeGreaterThanOrEqual(30);
    expectPaced(after, RATE);

    // Still reading: new mail in every mailbox arrives.
    seedAll(1);
    await eventually(async () => (await totalLength(prefix)) === 30, { what: 'one new message per mailbox', attempts: 1200 });
    expect(await producer.stop()).toBe(0);
    producers.delete(producer);
  }, 300_000);
});

describe('connections per host (IMAP_MAX_CONNECTIONS_PER_HOST)', () => {
  it('Dovecot never sees more than the cap; mailboxes past it wait, take turns, and are all read', async () => {
    const CAP = 3;
    const account = [ACCOUNTS[0]!];
    const prefix = uniquePrefix('hostcap');
    seedAll(2, account);
    // START_FROM=all under a new prefix: whatever an earlier test seeded is read too.
    const total = () => seeded.get(account[0]!.user)!;
    const producer = running(startDaemon(['producer'], {
      ...baseEnv, ACCOUNTS_FILE: oneAccountFile, MAILSTREAM_PREFIX: prefix, IMAP_CONNECT_RATE: '50', IMAP_MAX_CONNECTIONS_PER_HOST: String(CAP), POLL_INTERVAL_MS: '1000',
    }));
    const url = await listening(producer);
    let most = 0;
    let polling = true;
    const watcher = (async () => {
      while (polling) {
        most = Math.max(most, await dovecotConnections().catch(() => 0));
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    let sawWaiting = false;
    let sawGauge = false;
    try {
      await eventually(async () => {
        const body = await status(url);
        const host = body.connections.hosts[0];
        if (host && host.waiting > 0 && body.mailboxes.some((m) => m.queuedFor === 'host-cap')) sawWaiting = true;
        if (metricValue(await (await fetch(`${url}/metrics`)).text(), 'mailstream_imap_connect_waiting', 'reason="host-cap"') > 0) sawGauge = true;
        if (host) expect(host.open).toBeLessThanOrEqual(CAP);
        return (await totalLength(prefix, account)) === total();
      }, { what: 'every mailbox read through the capped connections', attempts: 1800 });
      // Mail arriving later is read too, each mailbox at its next turn.
      seedAll(1, account);
      await eventually(async () => (await totalLength(prefix, account)) === total(), { what: 'the new mail of every mailbox', attempts: 1800 });
      const body = await status(url);
      expect(body.mailboxes).toHaveLength(10);
      expect(body.mailboxes.every((m) => m.lastPollAt !== null)).toBe(true);
      // Taking turns is how this producer reads: each turn comes round in time, so it is ready.
      const ready = await fetch(`${url}/ready`);
      expect(ready.status, await ready.text()).toBe(200);
    } finally {
      polling = false;
      await watcher;
    }
    expect(sawWaiting).toBe(true);
    expect(sawGauge).toBe(true);
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(CAP);
    const handedOver = producer.logs().filter((l) => l.msg === 'connection handed to a waiting mailbox').length;
    expect(handedOver).toBeGreaterThan(0);
    expect(await producer.stop()).toBe(0);
    producers.delete(producer);
  }, 300_000);
});
