// Trimming never drops what a consumer group has not acknowledged; when the stream is full of such
// entries, or a group lags too far, the producer pauses and resumes when consumers catch up.
import { describe, expect, it } from 'vitest';
import { startRedisServer } from '../helpers/redis-server.ts';
import { generateCorpus } from '../helpers/corpus.ts';
import { startDaemon } from '../helpers/cli.ts';
import { eventually } from '../helpers/ports.ts';
import { producerEnv } from '../helpers/producer-env.ts';
import { useProducerTestbed } from '../helpers/producer-testbed.ts';
import { metricValue } from '../helpers/stream-read.ts';
import { accountKeys } from '../../src/core/keys.ts';

const USER = 'user@example.com';
const bed = useProducerTestbed({ startRedis: startRedisServer });

/** Reads up to `count` new entries for a group and acknowledges them; returns their keys. */
async function consume(stream: string, group: string, count: number): Promise<string[]> {
  const reply = (await bed.redis.xreadgroup('GROUP', group, 'c1', 'COUNT', count, 'STREAMS', stream, '>')) as Array<[string, Array<[string, string[] | null]>]> | null;
  const entries = reply?.[0]?.[1] ?? [];
  if (entries.length > 0) await bed.redis.xack(stream, group, ...entries.map(([id]) => id));
  return entries.map(([id, fields]) => {
    if (!fields) throw new Error(`entry ${id} was trimmed before ${group} acknowledged it`);
    return fields[1]!;
  });
}

describe('backpressure and trimming', () => {
  it('a slow group keeps its unacknowledged entries; the producer pauses at STREAM_MAX_LEN and resumes', async () => {
    const corpus = generateCorpus(260, { seed: 61, tag: 'trim' });
    bed.dovecot.seed(USER, 'Full', corpus.map((m) => m.raw));
    const env = producerEnv({ redisUrl: bed.redisServer.url, dovecot: bed.dovecot, mailboxes: ['Full'], extra: { START_FROM: 'all', FETCH_BATCH_SIZE: '20', STREAM_MAX_LEN: '100' } });
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);
    await bed.redis.xgroup('CREATE', keys.stream, 'fast', '0', 'MKSTREAM');
    await bed.redis.xgroup('CREATE', keys.stream, 'slow', '0');
    const daemon = startDaemon(['producer'], env);
    const url = (await daemon.waitForLog((l) => l.msg === 'health and metrics listening')).url as string;

    await daemon.waitForLog((l) => l.msg === 'fetching paused: consumers must catch up' && l.reason === 'stream-full', 'the pause');
    // Only the fast group acknowledges: nothing may be trimmed, so the producer stays paused
    // (a batch that was in flight when the pause began may still land).
    const fast: string[] = [];
    await eventually(async () => {
      fast.push(...await consume(keys.stream, 'fast', 1000));
      const paused = metricValue(await (await fetch(`${url}/metrics`)).text(), 'mailstream_producer_paused', 'mailbox="Full",reason="stream-full"');
      return paused === 1 && (await bed.redis.xlen(keys.stream)) === fast.length;
    }, { what: 'a stable pause' });
    // The stream never grows past STREAM_MAX_LEN, and it was full when fetching paused.
    expect(fast.length).toBeGreaterThan(100 - 2 * 20);
    expect(fast.length).toBeLessThanOrEqual(100);

    // The slow group works through the stream in small steps; every entry must still be there.
    const slow: string[] = [];
    await eventually(async () => {
      slow.push(...await consume(keys.stream, 'slow', 30));
      fast.push(...await consume(keys.stream, 'fast', 1000));
      return slow.length === corpus.length;
    }, { what: 'the slow group to read everything', intervalMs: 50 });
    expect(new Set(slow).size).toBe(corpus.length);
    expect(fast).toEqual(slow);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metricValue(metrics, 'mailstream_stream_trimmed_entries_total')).toBeGreaterThan(0);
    expect(metricValue(metrics, 'mailstream_backpressure_pauses_total', 'reason="stream-full"')).toBeGreaterThanOrEqual(1);
    expect(metricValue(metrics, 'mailstream_producer_paused', 'mailbox="Full",reason="stream-full"')).toBe(0);
    expect(await bed.redis.xlen(keys.stream)).toBeLessThanOrEqual(100);
    expect(await daemon.stop()).toBe(0);
  });

  it('a group lagging past MAX_CONSUMER_LAG pauses fetching until it catches up', async () => {
    const corpus = generateCorpus(120, { seed: 62, tag: 'lag' });
    bed.dovecot.seed(USER, 'Lag', corpus.map((m) => m.raw));
    const env = producerEnv({ redisUrl: bed.redisServer.url, dovecot: bed.dovecot, mailboxes: ['Lag'], extra: { START_FROM: 'all', FETCH_BATCH_SIZE: '10', MAX_CONSUMER_LAG: '30' } });
    const keys = accountKeys(env.MAILSTREAM_PREFIX!, USER);
    await bed.redis.xgroup('CREATE', keys.stream, 'workers', '0', 'MKSTREAM');
    const daemon = startDaemon(['producer'], env);
    await daemon.waitForLog((l) => l.msg === 'fetching paused: consumers must catch up' && l.reason === 'consumer-lag', 'the pause');
    const paused = await bed.redis.xlen(keys.stream);
    expect(paused).toBeLessThan(corpus.length);
    const read: string[] = [];
    await eventually(async () => {
      read.push(...await consume(keys.stream, 'workers', 15));
      return read.length === corpus.length;
    }, { what: 'everything consumed', intervalMs: 50 });
    expect(daemon.logs().some((l) => l.msg === 'fetching resumed' && l.reason === 'consumer-lag')).toBe(true);
    expect(new Set(read).size).toBe(corpus.length);
    expect(await daemon.stop()).toBe(0);
  });
});
