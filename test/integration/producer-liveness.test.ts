// The silent failure: the IMAP connection stays open but nothing comes back. The NOOP liveness
// check notices, /ready turns false, and the producer reconnects and catches up once the path
// works again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { startDovecot, type Dovecot } from '../helpers/dovecot.ts';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.ts';
import { generateCorpus } from '../helpers/corpus.ts';
import { startDaemon } from '../helpers/cli.ts';
import { eventually } from '../helpers/ports.ts';
import { killAllTracked } from '../helpers/processes.ts';
import { producerEnv } from '../helpers/producer-env.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';
import { metricValue, readEntries } from '../helpers/stream-read.ts';
import { accountKeys } from '../../src/core/keys.ts';

const USER = 'user@example.com';
let dovecot: Dovecot;
let redisServer: RedisServer;
let redis: Redis;
let proxy: TcpProxy;

beforeAll(async () => {
  [dovecot, redisServer] = await Promise.all([startDovecot(), startRedisServer()]);
  redis = redisServer.client();
  proxy = await startTcpProxy(dovecot.tlsPort);
});

afterAll(async () => {
  redis?.disconnect();
  await proxy?.close();
  await dovecot?.destroy();
  await redisServer?.destroy();
  expect(await killAllTracked()).toBe(0);
});

describe('IMAP liveness', () => {
  it('a connection that stops answering is noticed by NOOP, reported by /ready, and replaced', async () => {
    dovecot.seed(USER, 'INBOX', generateCorpus(3, { seed: 81, tag: 'live' }).map((m) => m.raw));
    const env = producerEnv({ redisUrl: redisServer.url, dovecot, extra: { START_FROM: 'all', IMAP_PORT: String(proxy.port), NOOP_INTERVAL_MS: '1000' } });
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);
    const daemon = startDaemon(['producer'], env);
    const url = (await daemon.waitForLog((l) => l.msg === 'health and metrics listening')).url as string;
    await eventually(async () => (await redis.xlen(keys.stream)) === 3, { what: 'the first sync' });
    await eventually(async () => (await fetch(`${url}/ready`)).status === 200, { what: 'ready' });
    const answeredBefore = metricValue(await (await fetch(`${url}/metrics`)).text(), 'mailstream_imap_last_response_timestamp_seconds', 'mailbox="INBOX"');
    expect(answeredBefore).toBeGreaterThan(0);

    proxy.freeze();
    await daemon.waitForLog((l) => l.msg === 'mailbox connection failed: reconnecting with backoff' && /did not answer a NOOP/.test(JSON.stringify(l.err)), 'the dead connection noticed');
    const down = await eventually(async () => { const r = await fetch(`${url}/ready`); return r.status === 503 ? (await r.json()) as { reasons: string[] } : undefined; }, { what: '/ready 503' });
    expect(down.reasons.join(' ')).toMatch(/imap INBOX/);

    // The dead connection is dropped, not politely logged out of: reconnects start while frozen.
    await eventually(async () => metricValue(await (await fetch(`${url}/metrics`)).text(), 'mailstream_imap_reconnects_total', 'mailbox="INBOX"') >= 1, { what: 'a reconnect while frozen' });
    const fresh = generateCorpus(1, { seed: 82, tag: 'live-after' });
    await dovecot.append(USER, 'INBOX', fresh.map((m) => m.raw));
    proxy.thaw();
    await eventually(async () => (await redis.xlen(keys.stream)) === 4, { what: 'mail after the path came back' });
    await eventually(async () => (await fetch(`${url}/ready`)).status === 200, { what: '/ready 200' });
    expect((await readEntries(redis, keys.stream)).map((e) => e.uid)).toEqual([1, 2, 3, 4]);
    expect(await daemon.stop()).toBe(0);
  });
});
