// The chaos run: several thousand emails from Dovecot through one producer and two workers into
// PostgreSQL while, at seeded-random moments, the producer and workers are SIGKILLed and
// restarted, Redis (AOF, fsync always) is killed and restarted, Dovecot is restarted, UIDVALIDITY
// changes, the sink is cut off and restored, and poison emails (refused by a table constraint)
// are planted. At the end every email is in the table exactly once and the DLQ holds exactly the
// poison emails. The seed is printed; CHAOS_SEED=<seed> replays a run.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { migrate } from '../../src/worker/sinks/postgres-migrate.ts';
import { accountKeys } from '../../src/core/keys.ts';
import { startDaemon, type Daemon } from '../helpers/cli.ts';
import { contentHash, generateCorpus, mulberry32 } from '../helpers/corpus.ts';
import { startDovecot, type Dovecot } from '../helpers/dovecot.ts';
import { eventually } from '../helpers/ports.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { startTestRedis, type TestRedis } from '../helpers/test-redis.ts';
import { planFaults, type FaultKind } from './fault-plan.ts';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.ts';

const SEED = process.env.CHAOS_SEED ? Number(process.env.CHAOS_SEED) : Math.floor(Math.random() * 2 ** 31);
const TOTAL = 3000;
const CHUNKS = 20;
const FEED_MS = 30_000;
const POISON_PER_PLANT = 2;
const USER = 'chaos@example.com';
const PASSWORD = 'chaos-password';
const PREFIX = 'chaos';

let redis: TestRedis;
let dovecot: Dovecot;
let db: TestDatabase;
let proxy: TcpProxy;
let producer: Daemon | undefined;
const workers: Array<Daemon | undefined> = [undefined, undefined];

beforeAll(async () => {
  process.stdout.write(`chaos seed: ${SEED} (replay with CHAOS_SEED=${SEED})\n`);
  redis = await startTestRedis({ aof: true });
  dovecot = await startDovecot({ users: [{ user: USER, password: PASSWORD }] });
  db = await createTestDatabase();
  const target = new URL(db.url);
  proxy = await startTcpProxy(target.hostname, Number(target.port || 5432));
  // The schema the worker would create, plus a rule that refuses poison for good (SQLSTATE 23514).
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    await migrate(client);
    await client.query(`ALTER TABLE emails ADD CONSTRAINT chaos_no_poison CHECK (subject IS NULL OR subject NOT LIKE 'POISON%')`);
  } finally {
    await client.end();
  }
});

afterAll(async () => {
  await producer?.stop();
  await Promise.all(workers.map((w) => w?.stop()));
  await proxy?.close();
  await dovecot?.destroy();
  await redis?.destroy();
  await db?.drop();
  expect(await killAllTracked()).toBe(0);
});

function sinkUrl(): string {
  const url = new URL(db.url);
  url.port = String(proxy.port);
  return url.href;
}

const common = () => ({ REDIS_URL: redis.url, MAILSTREAM_PREFIX: PREFIX, IMAP_USER: USER, HTTP_PORT: '0', LOG_LEVEL: 'warn', SHUTDOWN_TIMEOUT_MS: '2000' });

function startProducer(): Daemon {
  return startDaemon(['producer'], {
    ...common(), IMAP_HOST: '127.0.0.1', IMAP_PORT: String(dovecot.tlsPort), IMAP_SECURE: 'true', IMAP_TLS_CA_FILE: dovecot.caFile,
    IMAP_AUTH: 'password', IMAP_PASSWORD: PASSWORD, START_FROM: 'all', POLL_INTERVAL_MS: '1000', NOOP_INTERVAL_MS: '2000',
  });
}

function startWorker(): Daemon {
  return startDaemon(['worker'], {
    ...common(), SINK_URL: sinkUrl(), MAX_ATTEMPTS: '20', RETRY_BASE_MS: '200', RETRY_MAX_MS: '2000',
    CLAIM_IDLE_MS: '3000', CLAIM_INTERVAL_MS: '1000', READ_BLOCK_MS: '500',
  });
}

function poisonMail(n: number): { raw: Buffer; key: string } {
  const id = `poison-${n}-${SEED}@chaos.mailstream.test`;
  const raw = Buffer.from(`From: chaos@example.org\r\nTo: ${USER}\r\nSubject: POISON ${n}\r\nMessage-ID: <${id}>\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\nContent-Type: text/plain\r\n\r\nrefused by the sink\r\n`);
  return { raw, key: id };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('chaos', () => {
  it('loses nothing, duplicates nothing and dead-letters exactly the poison while everything fails', { timeout: 300_000 }, async () => {
    const random = mulberry32(SEED ^ 0x5eed);
    const corpus = generateCorpus(TOTAL, { seed: SEED, tag: `chaos-${SEED}` });
    const expectedKeys = new Set(corpus.map((m) => m.messageId ?? contentHash(m.raw)));
    const poisonKeys: string[] = [];
    const injected: Array<{ kind: FaultKind; atMs: number; detail: string }> = [];

    dovecot.createMailbox(USER, 'INBOX');
    producer = startProducer();
    workers[0] = startWorker();
    workers[1] = startWorker();

    const plan = planFaults({ seed: SEED, spanMs: FEED_MS, extra: 5 });
    const chunkSize = TOTAL / CHUNKS;
    const events = [
      ...Array.from({ length: CHUNKS }, (_, i) => ({ atMs: (i * FEED_MS) / CHUNKS, run: async () => dovecot.seed(USER, 'INBOX', corpus.slice(i * chunkSize, (i + 1) * chunkSize).map((m) => m.raw)) })),
      ...plan.map((fault) => ({ atMs: fault.atMs, run: async () => injected.push({ kind: fault.kind, atMs: fault.atMs, detail: await inject(fault.kind) }) })),
    ].sort((a, b) => a.atMs - b.atMs);

    async function inject(kind: FaultKind): Promise<string> {
      const pause = () => sleep(300 + Math.floor(random() * 1200));
      switch (kind) {
        case 'kill-producer':
          await producer?.stop('SIGKILL');
          await pause();
          producer = startProducer();
          return 'producer SIGKILLed and restarted';
        case 'kill-worker': {
          const i = Math.floor(random() * workers.length);
          await workers[i]?.stop('SIGKILL');
          await pause();
          workers[i] = startWorker();
          return `worker ${i + 1} SIGKILLed and restarted`;
        }
        case 'restart-redis':
          await redis.kill();
          await pause();
          await redis.start();
          return 'redis-server SIGKILLed and restarted from its AOF';
        case 'restart-dovecot':
          await dovecot.restart();
          return 'dovecot restarted';
        case 'uidvalidity-change':
          return `INBOX UIDVALIDITY now ${await dovecot.changeUidValidity(USER, 'INBOX')}`;
        case 'cut-sink':
          await proxy.cut();
          await sleep(1500 + Math.floor(random() * 2000));
          await proxy.restore();
          return 'PostgreSQL cut off and restored';
        case 'plant-poison': {
          const mails = Array.from({ length: POISON_PER_PLANT }, (_, i) => poisonMail(poisonKeys.length + i + 1));
          dovecot.seed(USER, 'INBOX', mails.map((m) => m.raw));
          poisonKeys.push(...mails.map((m) => m.key));
          return `${mails.length} poison emails planted`;
        }
      }
    }

    const started = Date.now();
    for (const event of events) {
      await sleep(Math.max(0, started + event.atMs - Date.now()));
      await event.run();
    }

    const keys = accountKeys(PREFIX, USER);
    const client = redis.client();
    try {
      const settled = async () => {
        const rows = Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM emails')).rows[0]!.n);
        const dlq = await client.xlen(keys.dlq);
        const pending = Number(((await client.xpending(keys.stream, 'workers')) as [number])[0]);
        const retries = await client.zcard(keys.group('workers').retries);
        return rows >= expectedKeys.size && dlq >= poisonKeys.length && pending === 0 && retries === 0;
      };
      await eventually(settled, { attempts: 1500, intervalMs: 100, what: 'every email in the table or the DLQ' }).catch(() => undefined);

      const rows = (await db.query<{ key: string; n: string }>('SELECT idempotency_key AS key, count(*) OVER (PARTITION BY COALESCE(message_id, idempotency_key)) AS n FROM emails')).rows;
      const present = new Set(rows.map((r) => r.key));
      const lost = [...expectedKeys].filter((k) => !present.has(k));
      const unexpected = [...present].filter((k) => !expectedKeys.has(k));
      const duplicatedByMessageId = rows.filter((r) => Number(r.n) > 1).length;
      const dlqEntries = (await client.xrange(keys.dlq, '-', '+')).map(([, fields]) => fields[fields.indexOf('key') + 1]!);
      const streamLength = await client.xlen(keys.stream);

      process.stdout.write([
        `chaos report (seed ${SEED}):`,
        `  emails sent ${expectedKeys.size} + ${poisonKeys.length} poison; rows ${rows.length}; stream entries ${streamLength}`,
        `  lost ${lost.length}, duplicated ${duplicatedByMessageId + unexpected.length}, dead-lettered ${dlqEntries.length} (poison planted ${poisonKeys.length})`,
        `  faults injected (${injected.length}):`,
        ...injected.map((f) => `    +${(f.atMs / 1000).toFixed(1)}s ${f.kind}: ${f.detail}`),
        '',
      ].join('\n'));

      expect(new Set(injected.map((f) => f.kind)).size).toBe(7);
      expect(lost).toEqual([]);
      expect(unexpected).toEqual([]);
      expect(duplicatedByMessageId).toBe(0);
      expect(rows).toHaveLength(expectedKeys.size);
      expect([...dlqEntries].sort()).toEqual([...poisonKeys].sort());
    } finally {
      client.disconnect();
    }
  });
});
