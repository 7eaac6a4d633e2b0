// Worker throughput: `mailstream worker` (dedupe + a no-op module sink + ack) on a stream filled
// with 4 KB entries, beside a plain ioredis XREADGROUP / SET NX / XACK loop pipelined per batch
// (the practical ceiling) and BullMQ with a no-op processor (what users pick instead), all on the
// same private Redis in the same run; then 1, 2 and 4 worker processes; and the worker's memory.
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Queue, Worker as BullWorker } from 'bullmq';
import { Redis } from 'ioredis';
import { accountKeys } from '../src/core/keys.ts';
import { startLocalRedis, type LocalRedis } from '../src/ops/local/local-redis.ts';
import { spawnDaemon, type DaemonProcess } from '../src/ops/local/stack.ts';
import { pairs } from '../src/core/stream-stats.ts';
import { emailJson, fillStream } from './payloads.ts';
import { watchMemory } from './proc-stats.ts';
import { measure, type BenchResult } from './results.ts';

const NOOP_SINK = pathToFileURL(fileURLToPath(new URL('./noop-sink.ts', import.meta.url))).href.replace(/^file:/, 'module:');
const GROUP = 'workers';
const BULL_CONCURRENCY = 50;

export interface WorkerBenchOptions { entries: number; log(line: string): void }

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until the group has read and acknowledged everything; returns the seconds from its first read. */
async function drainSeconds(redis: Redis, stream: string, total: number): Promise<number> {
  let firstReadAt = 0;
  for (;;) {
    const groups = (await redis.xinfo('GROUPS', stream).catch(() => [])) as unknown[];
    const group = groups.map(pairs).find((g) => g.name === GROUP);
    if (group) {
      const read = Number(group['entries-read'] ?? 0);
      const pending = Number(group.pending ?? 0);
      if (!firstReadAt && (read > 0 || pending > 0)) firstReadAt = Date.now();
      if (read >= total && pending === 0) return (Date.now() - (firstReadAt || Date.now())) / 1000;
    }
    await sleep(10);
  }
}

async function mailstreamWorkers(redis: LocalRedis, client: Redis, processes: number, entries: number, run: string): Promise<{ perSecond: number; rssMb: number }> {
  const account = `${run}@bench.mailstream.test`;
  const stream = accountKeys('mailstream', account).stream;
  await fillStream(client, stream, account, entries);
  const workers: DaemonProcess[] = [];
  try {
    for (let i = 0; i < processes; i++) {
      workers.push(await spawnDaemon('worker', { env: { REDIS_URL: redis.url, IMAP_USER: account, SINK_URL: NOOP_SINK, LOG_LEVEL: 'warn' } }));
    }
    const memory = watchMemory(workers[0]!.handle.child.pid!);
    const seconds = await drainSeconds(client, stream, entries);
    return { perSecond: entries / seconds, rssMb: memory.stop().peakRssMb };
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    await client.del(stream);
  }
}

/** The ceiling: what a hand-written loop on one connection does, one pipeline per read batch. */
async function ioredisLoop(client: Redis, url: string, entries: number): Promise<number> {
  const account = 'ceiling@bench.mailstream.test';
  const keys = accountKeys('ceiling', account);
  await fillStream(client, keys.stream, account, entries);
  await client.xgroup('CREATE', keys.stream, GROUP, '0');
  const reader = new Redis(url);
  try {
    const started = Date.now();
    let done = 0;
    while (done < entries) {
      const reply = (await reader.xreadgroup('GROUP', GROUP, 'c1', 'COUNT', 100, 'BLOCK', 100, 'STREAMS', keys.stream, '>')) as Array<[string, Array<[string, string[]]>]> | null;
      const batch = reply?.[0]?.[1] ?? [];
      if (batch.length === 0) continue;
      const pipeline = reader.pipeline();
      for (const [, fields] of batch) pipeline.set(keys.delivered(fields[1]!), '1', 'EX', 86_400, 'NX');
      pipeline.xack(keys.stream, GROUP, ...batch.map(([id]) => id));
      await pipeline.exec();
      done += batch.length;
    }
    return entries / ((Date.now() - started) / 1000);
  } finally {
    reader.disconnect();
    await client.del(keys.stream);
  }
}

async function bullmq(url: string, entries: number): Promise<number> {
  const { port } = new URL(url);
  const connection = { host: '127.0.0.1', port: Number(port), maxRetriesPerRequest: null };
  const queue = new Queue('bench', { connection });
  for (let start = 0; start < entries; start += 1000) {
    await queue.addBulk(Array.from({ length: Math.min(1000, entries - start) }, (_, i) => ({
      name: 'email',
      data: { key: `bench-${start + i}`, email: emailJson(start + i, 'bull@bench.mailstream.test') },
      opts: { removeOnComplete: true, removeOnFail: true },
    })));
  }
  let completed = 0;
  const started = Date.now();
  const finished = new Promise<void>((resolve) => {
    const worker = new BullWorker('bench', async () => undefined, { connection, concurrency: BULL_CONCURRENCY });
    worker.on('completed', () => {
      completed += 1;
      if (completed === entries) void worker.close().then(() => resolve());
    });
  });
  await finished;
  const perSecond = entries / ((Date.now() - started) / 1000);
  await queue.obliterate({ force: true });
  await queue.close();
  return perSecond;
}

export async function benchWorker(options: WorkerBenchOptions): Promise<BenchResult[]> {
  const { entries, log } = options;
  const redis = await startLocalRedis();
  const client = redis.client();
  try {
    log(`worker: ${entries} entries of 4 KB, 1 mailstream worker (no-op module sink)`);
    const one = await mailstreamWorkers(redis, client, 1, entries, 'w1');
    log('worker: plain ioredis XREADGROUP / SET NX / XACK loop');
    const ceiling = await ioredisLoop(client, redis.url, entries);
    log(`worker: BullMQ, no-op processor, concurrency ${BULL_CONCURRENCY}`);
    const bull = await bullmq(redis.url, entries);
    log('worker: 2 and 4 worker processes');
    const two = await mailstreamWorkers(redis, client, 2, entries, 'w2');
    const four = await mailstreamWorkers(redis, client, 4, entries, 'w4');
    const unit = 'emails/s';
    return [
      measure({ name: 'worker_throughput_vs_ioredis_loop', value: one.perSecond, unit, baseline: { name: 'ioredis XREADGROUP/SET NX/XACK loop', value: ceiling }, target: { kind: 'ratio-at-least', ratio: 0.7 } }),
      measure({ name: 'worker_throughput_vs_bullmq', value: one.perSecond, unit, baseline: { name: `BullMQ no-op (concurrency ${BULL_CONCURRENCY})`, value: bull }, target: { kind: 'ratio-at-least', ratio: 2.5 } }),
      measure({ name: 'worker_scaling_1_process', value: one.perSecond, unit }),
      measure({ name: 'worker_scaling_2_processes', value: two.perSecond, unit, baseline: { name: '1 process', value: one.perSecond } }),
      measure({ name: 'worker_scaling_4_processes', value: four.perSecond, unit, baseline: { name: '1 process', value: one.perSecond } }),
      measure({ name: 'worker_peak_rss', value: one.rssMb, unit: 'MB', target: { kind: 'below', value: 150 } }),
    ];
  } finally {
    client.disconnect();
    await redis.destroy();
  }
}
