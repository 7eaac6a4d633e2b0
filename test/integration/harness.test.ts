// The test harness itself, against real services: Dovecot over TLS with XOAUTH2 using a token
// google-auth-library got from the local token endpoint; Redis with AOF surviving a restart;
// seeding, UIDVALIDITY changes and a PostgreSQL database.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OAuth2Client } from 'google-auth-library';
import { ImapFlow } from 'imapflow';
import { startDovecot, type Dovecot } from '../helpers/dovecot.ts';
import { startOAuthServer, type OAuthServer } from '../helpers/oauth-server.ts';
import { startRedisServer } from '../helpers/redis-server.ts';
import { createTestDatabase } from '../helpers/postgres.ts';
import { generateCorpus } from '../helpers/corpus.ts';
import { killAllTracked } from '../helpers/processes.ts';

const USER = 'user@example.com';
let oauth: OAuthServer;
let dovecot: Dovecot;

beforeAll(async () => {
  oauth = await startOAuthServer();
  dovecot = await startDovecot({ introspectionUrl: oauth.introspectUrl });
});

afterAll(async () => {
  await dovecot?.destroy();
  await oauth?.close();
  expect(await killAllTracked()).toBe(0);
});

function tlsClient(auth: { user: string; accessToken?: string; pass?: string }) {
  return new ImapFlow({
    host: '127.0.0.1', port: dovecot.tlsPort, secure: true,
    tls: { ca: readFileSync(dovecot.caFile), servername: 'localhost' },
    auth: auth as { user: string; accessToken: string },
    logger: false,
  });
}

describe('private Dovecot', () => {
  it('logs in over TLS with XOAUTH2 using a token google-auth-library refreshed at the local endpoint', async () => {
    const refreshToken = oauth.issueRefreshToken(USER);
    const google = new OAuth2Client({ clientId: oauth.clientId, clientSecret: oauth.clientSecret, endpoints: { oauth2TokenUrl: oauth.tokenUrl } });
    google.setCredentials({ refresh_token: refreshToken });
    const { token } = await google.getAccessToken();
    expect(token).toMatch(/^ya29-/);
    expect(oauth.counters.refreshGrants).toBeGreaterThan(0);

    const introspections = oauth.counters.introspections;
    const client = tlsClient({ user: USER, accessToken: token! });
    await client.connect();
    // OAUTHBEARER is not offered by this instance, so the login that Dovecot checked was XOAUTH2.
    expect(oauth.counters.introspections).toBe(introspections + 1);
    expect(client.authenticated).toBeTruthy();
    const box = await client.mailboxOpen('INBOX');
    expect(Number(box.uidValidity)).toBeGreaterThan(0);
    await client.logout();
  });

  it('refuses a token that is not valid and a TLS peer it cannot verify', async () => {
    const bad = tlsClient({ user: USER, accessToken: 'ya29-not-a-token' });
    const err = await bad.connect().then(() => null, (e: unknown) => e as { authenticationFailed?: boolean });
    expect(err?.authenticationFailed).toBe(true);

    const untrusted = new ImapFlow({ host: '127.0.0.1', port: dovecot.tlsPort, secure: true, auth: { user: USER, pass: 'secret-password' }, logger: false });
    await expect(untrusted.connect()).rejects.toThrow(/certificate/i);
  });

  it('seeds a Maildir with UIDs in order, and APPENDs like a delivering server', async () => {
    const mails = generateCorpus(30, { seed: 7 });
    dovecot.seed(USER, 'Seeded', mails.map((m) => m.raw));
    await dovecot.append(USER, 'Seeded', generateCorpus(2, { seed: 8, tag: 'appended' }).map((m) => m.raw));
    const client = tlsClient({ user: USER, pass: 'secret-password' });
    await client.connect();
    await client.mailboxOpen('Seeded');
    const ids: string[] = [];
    for await (const msg of client.fetch('1:*', { uid: true, envelope: true }, { uid: true })) ids.push(msg.envelope?.messageId ?? '');
    await client.logout();
    expect(ids).toHaveLength(32);
    expect(ids.slice(0, 30)).toEqual(mails.map((m) => (m.messageId ? `<${m.messageId}>` : '')));
  });

  it('forces a UIDVALIDITY change, and renumbers a mailbox from UID 1', async () => {
    dovecot.seed(USER, 'Renumbered', generateCorpus(5, { seed: 9 }).map((m) => m.raw));
    const before = await dovecot.status(USER, 'Renumbered');
    expect(before.messages).toBe(5);
    const next = await dovecot.changeUidValidity(USER, 'Renumbered');
    expect((await dovecot.status(USER, 'Renumbered')).uidValidity).toBe(next);

    await dovecot.append(USER, 'Renumbered', generateCorpus(1, { seed: 10, tag: 'extra' }).map((m) => m.raw));
    await dovecot.renumber(USER, 'Renumbered');
    const after = await dovecot.status(USER, 'Renumbered');
    expect(after.messages).toBe(6);
    expect(after.uidNext).toBe(7);
    expect(after.uidValidity).not.toBe(next);
  });

  it('is stopped, killed and restarted on the same ports', async () => {
    await dovecot.kill();
    await dovecot.start();
    const client = tlsClient({ user: USER, pass: 'secret-password' });
    await client.connect();
    await client.logout();
  });
});

describe('private Redis', () => {
  it('keeps its data across a restart with AOF', async () => {
    const redis = await startRedisServer({ aof: true });
    try {
      let client = redis.client();
      await client.xadd('s', '*', 'k', 'v');
      await client.set('state', '42');
      client.disconnect();
      await redis.kill(); // no chance to save on the way out
      await redis.start();
      client = redis.client();
      expect(await client.get('state')).toBe('42');
      expect(await client.xlen('s')).toBe(1);
      client.disconnect();
    } finally {
      await redis.destroy();
    }
  });
});

describe('PostgreSQL', () => {
  it('gives each test file a database of its own', async () => {
    const db = await createTestDatabase();
    try {
      const { rows } = await db.query<{ name: string }>('SELECT current_database() AS name');
      expect(rows[0]!.name).toMatch(/^mailstream_test_/);
    } finally {
      await db.drop();
    }
  });
});
