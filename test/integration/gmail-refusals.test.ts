// Gmail's refusals, each reproduced by a server that answers as Gmail does, and what the producer
// does about them: throttling ([THROTTLED]) and too many simultaneous connections ([ALERT]) get a
// longer backoff than a dropped connection, a used-up quota ([OVERQUOTA]) a long wait instead of a
// reconnect loop, an access token that dies mid-session a fresh token. Each is named by /ready, the
// mailbox state and mailstream_imap_errors_total{kind}; each ends by itself once the server relents.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { startOAuthServer, type OAuthServer } from '../helpers/oauth-server.ts';
import { startTestRedis, type TestRedis } from '../helpers/test-redis.ts';
import { generateCorpus } from '../helpers/corpus.ts';
import { startDaemon, type Daemon } from '../helpers/cli.ts';
import { eventually } from '../helpers/ports.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { tokenFileFor, uniquePrefix } from '../helpers/producer-env.ts';
import { metricValue } from '../helpers/stream-read.ts';
import { ALL_MAIL, gmailProducerEnv, startGmailImap, type GmailImap } from '../helpers/gmail-imap.ts';
import { accountKeys } from '../../src/core/keys.ts';

let gmail: GmailImap;
let oauth: OAuthServer;
let redisServer: TestRedis;
let redis: Redis;
let seed = 200;

beforeAll(async () => {
  oauth = await startOAuthServer();
  [gmail, redisServer] = await Promise.all([
    // Gmail asks Google whether a token is good; here the local provider's introspection answers.
    startGmailImap({
      checkToken: async (user, token) => {
        const res = await fetch(oauth.introspectUrl, { method: 'POST', body: new URLSearchParams({ token }) });
        const answer = (await res.json()) as { active: boolean; email?: string };
        return answer.active && answer.email === user;
      },
    }),
    startTestRedis(),
  ]);
  redis = redisServer.client();
});

afterAll(async () => {
  redis?.disconnect();
  await gmail?.close();
  await redisServer?.destroy();
  await oauth?.close();
  expect(await killAllTracked()).toBe(0);
});

/** A short plain backoff and a throttling backoff well above it, so the logs can tell them apart. */
const WAITS = { RECONNECT_BASE_MS: '100', RECONNECT_MAX_MS: '200', IMAP_THROTTLED_WAIT_MS: '600', IMAP_THROTTLED_MAX_WAIT_MS: '1200' };

/** Messages in each mailbox so far: the server is shared by the tests, and every producer reads from the start. */
const added: Record<string, number> = { INBOX: 0, [ALL_MAIL]: 0 };

function addMail(mailbox: string, n: number): void {
  added[mailbox] = (added[mailbox] ?? 0) + n;
  for (const mail of generateCorpus(n, { seed: ++seed, tag: `refusal-${seed}`, mix: { plain: 1, alternative: 1, huge: 0, malformed: 0 } })) gmail.add(mailbox, { raw: mail.raw });
}

interface Watch { daemon: Daemon; url: string; keys: ReturnType<typeof accountKeys> }

async function startProducer(mailboxes: string[], extra: Record<string, string> = {}): Promise<Watch> {
  const env = gmailProducerEnv(gmail, { redisUrl: redisServer.url, prefix: uniquePrefix('refusal'), mailboxes, extra: { ...WAITS, ...extra } });
  const daemon = startDaemon(['producer'], env);
  const url = (await daemon.waitForLog((l) => l.msg === 'health and metrics listening')).url as string;
  return { daemon, url, keys: accountKeys(env.MAILSTREAM_PREFIX!, gmail.user) };
}

async function readiness(url: string): Promise<{ status: number; reasons: string }> {
  const res = await fetch(`${url}/ready`);
  return { status: res.status, reasons: ((await res.json()) as { reasons: string[] }).reasons.join(' | ') };
}

async function mailboxStatus(url: string, mailbox: string): Promise<{ state: string; retryAt: number | null; lastError: string | null }> {
  const status = (await (await fetch(`${url}/status`)).json()) as { mailboxes: Array<{ mailbox: string; state: string; retryAt: number | null; lastError: string | null }> };
  return status.mailboxes.find((m) => m.mailbox === mailbox)!;
}

const metrics = async (url: string) => (await fetch(`${url}/metrics`)).text();

describe('Gmail refusing the producer', () => {
  it('[THROTTLED] at login: a longer backoff than a plain failure, named by /ready, and recovery when it stops', async () => {
    addMail('INBOX', 2);
    gmail.refuse('login', { code: 'THROTTLED', text: 'Account exceeded command or bandwidth limits' });
    const { daemon, url, keys } = await startProducer(['INBOX']);
    try {
      const ready = await eventually(async () => { const r = await readiness(url); return /throttled by the server/.test(r.reasons) ? r : undefined; }, { what: '/ready naming the throttling' });
      expect(ready.status).toBe(503);
      expect(ready.reasons).toMatch(/imap INBOX: throttled by the server: IMAP server refused the login of .*: NO \[THROTTLED\] Account exceeded command or bandwidth limits; next login at \d{4}-/);
      expect(await mailboxStatus(url, 'INBOX')).toMatchObject({ state: 'throttled' });
      await eventually(async () => metricValue(await metrics(url), 'mailstream_imap_errors_total', 'mailbox="INBOX",kind="throttled"') >= 2, { what: 'a second throttled login' });
      expect(metricValue(await metrics(url), 'mailstream_imap_refused', 'mailbox="INBOX",kind="throttled"')).toBe(1);
      // The throttling breaker stays closed: the refusal is the server's answer, not an outage.
      expect(metricValue(await metrics(url), 'mailstream_circuit_breaker_opens_total', 'breaker="imap"')).toBe(0);
      const warning = daemon.logs().find((l) => l.msg === 'IMAP server throttles this account: waiting longer before the next login')!;
      expect(warning).toMatchObject({ kind: 'throttled', attempt: 1 });
      // Jitter takes off at most 30 %: the first throttled wait is above the longest plain one.
      expect(warning.waitMs as number).toBeGreaterThanOrEqual(0.7 * Number(WAITS.IMAP_THROTTLED_WAIT_MS));
      expect(warning.waitMs as number).toBeGreaterThan(Number(WAITS.RECONNECT_MAX_MS));
      expect(await redis.xlen(keys.stream)).toBe(0);

      gmail.refuse('login', undefined);
      await eventually(async () => (await redis.xlen(keys.stream)) === added.INBOX, { what: 'mail once Gmail relents' });
      await eventually(async () => (await readiness(url)).status === 200, { what: '/ready 200' });
      expect(metricValue(await metrics(url), 'mailstream_imap_refused', 'mailbox="INBOX",kind="throttled"')).toBe(0);
      expect(await mailboxStatus(url, 'INBOX')).toMatchObject({ retryAt: null, lastError: null });
    } finally {
      gmail.refuse('login', undefined);
      expect(await daemon.stop()).toBe(0);
    }
  });

  it('[ALERT] Too many simultaneous connections: the refused mailbox backs off, counts our connections, and joins once there is room', async () => {
    addMail('INBOX', 1);
    addMail(ALL_MAIL, 1);
    gmail.maxConnections = 1; // other clients hold the rest of the account's connections
    const { daemon, url, keys } = await startProducer(['INBOX', ALL_MAIL]);
    try {
      const ready = await eventually(async () => { const r = await readiness(url); return /Too many simultaneous connections/.test(r.reasons) ? r : undefined; }, { what: '/ready naming the refusal' });
      expect(ready.status).toBe(503);
      expect(ready.reasons).toMatch(/throttled by the server: .*NO \[ALERT\] Too many simultaneous connections/);
      const warning = await daemon.waitForLog((l) => l.msg === 'IMAP server throttles this account: waiting longer before the next login', 'the throttling warning');
      // The one connection Gmail allowed is ours: the log says how many we hold.
      expect(warning).toMatchObject({ kind: 'throttled', openConnections: 1 });
      expect(warning.waitMs as number).toBeGreaterThan(Number(WAITS.RECONNECT_MAX_MS));
      await eventually(async () => (await redis.xlen(keys.stream)) > 0, { what: 'the mailbox that got a connection' });

      gmail.maxConnections = Number.POSITIVE_INFINITY;
      await eventually(async () => (await redis.xlen(keys.stream)) === added.INBOX! + added[ALL_MAIL]!, { what: 'the second mailbox once there is room' });
      await eventually(async () => (await readiness(url)).status === 200, { what: '/ready 200' });
      expect(metricValue(await metrics(url), 'mailstream_imap_errors_total', 'kind="throttled"')).toBeGreaterThanOrEqual(1);
    } finally {
      gmail.maxConnections = Number.POSITIVE_INFINITY;
      expect(await daemon.stop()).toBe(0);
    }
  });

  it('[OVERQUOTA] (the daily download limit) mid-session: one long wait instead of a reconnect loop, /ready says until when', async () => {
    addMail('INBOX', 1);
    gmail.refuse('fetch', { code: 'OVERQUOTA', text: 'Account exceeded command or bandwidth limits' });
    const logins = gmail.counts.login;
    const { daemon, url, keys } = await startProducer(['INBOX'], { IMAP_OVER_QUOTA_WAIT_MS: String(60 * 60_000) });
    try {
      const ready = await eventually(async () => { const r = await readiness(url); return /over quota/.test(r.reasons) ? r : undefined; }, { what: '/ready naming the quota' });
      expect(ready.status).toBe(503);
      expect(ready.reasons).toMatch(/imap INBOX: over quota \(bandwidth or download limit\): IMAP server answered NO \[OVERQUOTA\] Account exceeded command or bandwidth limits; next login at/);
      const warning = await daemon.waitForLog((l) => l.msg === 'IMAP quota used up (bandwidth or download limit): waiting before the next login', 'the quota warning');
      expect(warning).toMatchObject({ kind: 'over-quota' });
      expect(warning.waitMs as number).toBeGreaterThanOrEqual(60 * 60_000);
      const status = await mailboxStatus(url, 'INBOX');
      expect(status.state).toBe('over-quota');
      expect(status.retryAt! - Date.parse(warning.time as string)).toBeGreaterThanOrEqual(60 * 60_000 - 1000);
      expect(metricValue(await metrics(url), 'mailstream_imap_refused', 'mailbox="INBOX",kind="over-quota"')).toBe(1);
      expect(metricValue(await metrics(url), 'mailstream_imap_errors_total', 'mailbox="INBOX",kind="over-quota"')).toBe(1);
      // It logged in once and now waits the hour out: no second login is on its way.
      expect(gmail.counts.login - logins).toBe(1);
      expect(await redis.xlen(keys.stream)).toBe(0);
    } finally {
      gmail.refuse('fetch', undefined);
      expect(await daemon.stop()).toBe(0);
    }
  });

  it('[OVERQUOTA] ends: the producer goes on by itself after the wait', async () => {
    addMail('INBOX', 1);
    gmail.refuse('fetch', { code: 'OVERQUOTA', text: 'Account exceeded command or bandwidth limits' });
    const { daemon, url, keys } = await startProducer(['INBOX'], { IMAP_OVER_QUOTA_WAIT_MS: '1000' });
    try {
      await eventually(async () => /over quota/.test((await readiness(url)).reasons), { what: '/ready naming the quota' });
      const before = await redis.xlen(keys.stream);
      expect(before).toBe(0);
      gmail.refuse('fetch', undefined);
      await eventually(async () => (await redis.xlen(keys.stream)) === added.INBOX, { what: 'mail after the quota wait' });
      await eventually(async () => (await readiness(url)).status === 200, { what: '/ready 200' });
      expect(metricValue(await metrics(url), 'mailstream_imap_refused', 'mailbox="INBOX",kind="over-quota"')).toBe(0);
    } finally {
      gmail.refuse('fetch', undefined);
      expect(await daemon.stop()).toBe(0);
    }
  });

  it('an access token that expires during a long session: Gmail ends it, the producer logs in with a fresh token and goes on', async () => {
    addMail('INBOX', 1);
    const { path: tokenFile } = tokenFileFor(oauth, gmail.user);
    const { daemon, url, keys } = await startProducer(['INBOX'], {
      IMAP_AUTH: 'oauth2', OAUTH2_CLIENT_ID: oauth.clientId, OAUTH2_CLIENT_SECRET: oauth.clientSecret,
      OAUTH2_TOKEN_URL: oauth.tokenUrl, OAUTH2_TOKEN_FILE: tokenFile,
    });
    try {
      const first = await eventually(async () => { const n = await redis.xlen(keys.stream); return n > 0 ? n : undefined; }, { what: 'the first sync' });
      await eventually(async () => (await readiness(url)).status === 200, { what: 'ready' });
      const grants = oauth.counters.refreshGrants;

      // The token the producer holds dies while its session is open; Gmail then ends the session.
      oauth.expireAccessTokens();
      gmail.dropSessions('Session expired, please login again.');
      addMail('INBOX', 1);
      await eventually(async () => (await redis.xlen(keys.stream)) === first + 1, { what: 'mail after the re-login' });
      expect(oauth.counters.refreshGrants).toBeGreaterThan(grants);
      const text = await metrics(url);
      expect(metricValue(text, 'mailstream_imap_errors_total', 'mailbox="INBOX",kind="auth"')).toBeNaN();
      expect(metricValue(text, 'mailstream_imap_errors_total', 'mailbox="INBOX",kind="connection"')).toBeGreaterThanOrEqual(1);
      expect(daemon.logs().filter((l) => l.level === 'error')).toEqual([]);
      await eventually(async () => (await readiness(url)).status === 200, { what: '/ready 200' });
    } finally {
      expect(await daemon.stop()).toBe(0);
    }
  });
});
