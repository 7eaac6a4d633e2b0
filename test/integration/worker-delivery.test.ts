// The worker daemon through its real interface (`mailstream worker` as a process) against a
// private Redis: JSONL and webhook delivery, dedupe of delivered keys, the same Idempotency-Key
// on redelivery, the signature header, and /ready.
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accountKeys } from '../../src/core/keys.ts';
import { runCli, startDaemon, type Daemon } from '../helpers/cli.ts';
import { appendEmails, sampleEmail } from '../helpers/entries.ts';
import { eventually, freePort } from '../helpers/ports.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { startTestRedis, type TestRedis } from '../helpers/test-redis.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.ts';

const ACCOUNT = 'user@example.com';
let redisServer: TestRedis;
let redis: Redis;
let dir: string;
const daemons: Daemon[] = [];

beforeAll(async () => {
  redisServer = await startTestRedis();
  redis = redisServer.client();
  dir = mkdtempSync(join(tmpdir(), 'ms-worker-'));
});

afterAll(async () => {
  await Promise.all(daemons.map((d) => d.stop()));
  redis?.disconnect();
  await redisServer?.destroy();
  rmSync(dir, { recursive: true, force: true });
  expect(await killAllTracked()).toBe(0);
});

async function worker(prefix: string, sinkUrl: string, extra: Record<string, string> = {}) {
  const port = await freePort();
  const daemon = startDaemon(['worker'], {
    REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: prefix, IMAP_USER: ACCOUNT, SINK_URL: sinkUrl,
    HTTP_PORT: String(port), READ_BLOCK_MS: '200', RETRY_BASE_MS: '200', ...extra,
  });
  daemons.push(daemon);
  await daemon.waitForLog((l) => l.msg === 'worker started', 'worker start');
  return { daemon, port };
}

describe('worker', () => {
  it('appends every email once to a JSONL file, and acknowledges without delivering a key already delivered', async () => {
    const prefix = `t${randomBytes(4).toString('hex')}`;
    const out = join(dir, `${prefix}.jsonl`);
    const keys = await appendEmails(redis, prefix, ACCOUNT, 300);
    const { daemon, port } = await worker(prefix, `file://${out}`);
    const lines = () => readFileSync(out, 'utf8').split('\n').filter(Boolean);
    await eventually(() => lines().length === 300, { what: '300 lines' });
    expect(new Set(lines().map((l) => (JSON.parse(l) as { key: string }).key))).toEqual(new Set(keys));

    // The same keys again (a producer re-sync): acknowledged, not written twice.
    await appendEmails(redis, prefix, ACCOUNT, 20);
    const k = accountKeys(prefix, ACCOUNT);
    await eventually(() => lagIsZero(k.stream), { what: 'every entry read and acknowledged' });
    await eventually(async () => (await metric(port, 'mailstream_emails_deduplicated_total')) === 20, { what: '20 deduplicated' });
    expect(lines()).toHaveLength(300);
    expect(await metric(port, 'mailstream_emails_delivered_total{sink="jsonl"}')).toBe(300);
    const ready = await fetch(`http://127.0.0.1:${port}/ready`);
    expect(ready.status).toBe(200);
    expect(await daemon.stop()).toBe(0);
  });

  it('posts the email JSON as-is with its Idempotency-Key and a verifiable signature; a redelivery carries the same key', async () => {
    const prefix = `t${randomBytes(4).toString('hex')}`;
    const secret = 'whsec-test-secret-value';
    const receiver: WebhookReceiver = await startWebhookReceiver((r) => (r.key.includes('msg-3@') && r.attempt === 1 ? { status: 503 } : { status: 204 }));
    try {
      const email = sampleEmail(ACCOUNT, 3);
      const raw = JSON.stringify(email);
      await redis.xadd(accountKeys(prefix, ACCOUNT).stream, '*', 'key', email.key, 'email', raw);
      const { daemon } = await worker(prefix, receiver.url, { WEBHOOK_SECRET: secret });
      await eventually(() => receiver.accepted.length === 1, { what: 'accepted after a retry' });
      const attempts = receiver.attemptsOf(email.key);
      expect(attempts).toHaveLength(2);
      for (const a of attempts) {
        expect(a.body).toBe(raw);
        expect(a.headers['idempotency-key']).toBe(email.key);
        const [t, v1] = String(a.headers['x-mailstream-signature']).split(',').map((p) => p.split('=')[1]);
        expect(v1).toBe(createHmac('sha256', secret).update(`${t}.${a.body}`).digest('hex'));
      }
      expect(daemon.output()).not.toContain(secret);
      expect(await daemon.stop()).toBe(0);
    } finally {
      await receiver.close();
    }
  });

  it('consumes the stream of every account in ACCOUNTS_FILE in one process, and dlq picks one with --account', async () => {
    const prefix = `t${randomBytes(4).toString('hex')}`;
    const out = join(dir, `${prefix}.jsonl`);
    const file = join(dir, `${prefix}-accounts.json`);
    writeFileSync(file, JSON.stringify({ accounts: [{ user: 'a@example.com' }, { user: 'b@example.com' }] }));
    await appendEmails(redis, prefix, 'a@example.com', 30);
    await appendEmails(redis, prefix, 'b@example.com', 20, 100);
    await redis.xadd(accountKeys(prefix, 'b@example.com').dlq, '*', 'key', 'k', 'email', '{}', 'reason', 'permanent');
    const { daemon } = await worker(prefix, `file://${out}`, { ACCOUNTS_FILE: file, IMAP_USER: '' });
    const accounts = () => readFileSync(out, 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { account: string }).account);
    await eventually(() => accounts().length === 50, { what: '50 lines' });
    expect(accounts().filter((a) => a === 'a@example.com')).toHaveLength(30);
    expect(await daemon.stop()).toBe(0);

    const env = { REDIS_URL: redisServer.url, MAILSTREAM_PREFIX: prefix, ACCOUNTS_FILE: file };
    expect((await runCli(['dlq', 'list'], env)).code).toBe(2);
    const list = await runCli(['dlq', '--account', 'b@example.com', 'list', '--json'], env);
    expect(list.code).toBe(0);
    expect(JSON.parse(list.stdout)).toHaveLength(1);
  });

  it('keeps a dedupe marker per delivered key, small whatever the key, expiring after DEDUPE_TTL_SECONDS', async () => {
    const prefix = `t${randomBytes(4).toString('hex')}`;
    const k = accountKeys(prefix, ACCOUNT);
    const long = `<${'x'.repeat(2000)}@example.com>`;
    const longestPlain = `<${'y'.repeat(26)}@example.com>`; // 40 characters: kept as it is
    for (const key of ['<short@example.com>', longestPlain, long]) await redis.xadd(k.stream, '*', 'key', key, 'email', JSON.stringify(sampleEmail(ACCOUNT, 1, key)));
    const { daemon } = await worker(prefix, `file://${join(dir, `${prefix}.jsonl`)}`, { DEDUPE_TTL_SECONDS: '600' });
    await eventually(() => lagIsZero(k.stream), { what: 'all three delivered' });
    const markers = await redis.keys(`${prefix}:{${ACCOUNT}}:group:workers:d:*`);
    expect(markers).toHaveLength(3);
    expect(markers.some((m) => m.endsWith(longestPlain))).toBe(true);
    for (const marker of markers) {
      // A cluster node also links each key into its slot's key list: a few bytes more per key.
      expect(Number(await redis.memory('USAGE', marker))).toBeLessThan(redisServer.kind === 'cluster' ? 170 : 150);
      const ttl = await redis.ttl(marker);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(600);
    }
    expect(await daemon.stop()).toBe(0);
  });

  it('two consumer groups on one stream, one sink each: every email reaches both sinks once', async () => {
    const prefix = `t${randomBytes(4).toString('hex')}`;
    const k = accountKeys(prefix, ACCOUNT);
    const keys = await appendEmails(redis, prefix, ACCOUNT, 50);
    const outs = { workers: join(dir, `${prefix}-workers.jsonl`), archive: join(dir, `${prefix}-archive.jsonl`) };
    const lines = (file: string) => { try { return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { key: string }).key); } catch { return []; } };
    // The first group delivers everything before the second starts: its markers must not hide
    // the emails from the second group's sink.
    const first = await worker(prefix, `file://${outs.workers}`);
    await eventually(() => lines(outs.workers).length === 50, { what: 'the first sink' });
    const second = await worker(prefix, `file://${outs.archive}`, { CONSUMER_GROUP: 'archive' });
    await eventually(() => lines(outs.archive).length === 50, { what: 'the second sink' });
    // A re-sent batch (the same keys): each group skips what it delivered.
    await appendEmails(redis, prefix, ACCOUNT, 50);
    await eventually(async () => (await metric(second.port, 'mailstream_emails_deduplicated_total')) === 50 && (await metric(first.port, 'mailstream_emails_deduplicated_total')) === 50, { what: 'both groups skipping the repeats' });
    for (const file of Object.values(outs)) {
      expect(lines(file)).toHaveLength(50);
      expect(new Set(lines(file))).toEqual(new Set(keys));
    }
    expect(await redis.keys(`${prefix}:{${ACCOUNT}}:group:archive:d:*`)).toHaveLength(50);
    expect(await first.daemon.stop()).toBe(0);
    expect(await second.daemon.stop()).toBe(0);
  });

  it('is not ready while the sink does not answer', async () => {
    const prefix = `t${randomBytes(4).toString('hex')}`;
    const receiver = await startWebhookReceiver();
    await receiver.down();
    const { daemon, port } = await worker(prefix, receiver.url);
    const res = await fetch(`http://127.0.0.1:${port}/ready`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as { reasons: string[] }).reasons.join(' ')).toMatch(/sink \(webhook\)/);
    expect(await daemon.stop()).toBe(0);
  });
});

async function lagIsZero(stream: string): Promise<boolean> {
  const groups = (await redis.xinfo('GROUPS', stream)) as unknown[][];
  const g = groups[0]!;
  return Number(g[g.indexOf('lag') + 1]) === 0 && Number(g[g.indexOf('pending') + 1]) === 0;
}

async function metric(port: number, series: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.split(' ')[1]) : Number.NaN;
}
