// Worker throughput: `mailstream worker` (dedupe + a no-op module sink + ack) on a stream filled
// with 4 KB entries, beside a plain ioredis XREADGROUP / SET NX / XACK loop pipelined per batch
// (the practical ceiling) and BullMQ with a no-op processor (what users pick instead), all on the
// same private Redis in the same run; then 1, 2 and 4 worker processes; and the worker's memory.
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Queue, Worker as BullWorker } from 'bullmq';
import { Redis } from 'ioredis';
import { accountKeys } from '../src/core/keys.ts';
import { startLocalRedis, type LocalRedis } from '../src/ops/local/local-redis.ts';
import { announceEntries } from '../src/core/signals.ts';
import { spawnDaemon, waitUntilReady, type DaemonProcess } from '../src/ops/local/stack.ts';
import { pairs } from '../src/core/stream-stats.ts';
import { emailJson, fillStream } from './payloads.ts';
import { memoryOf, watchMemory } from './proc-stats.ts';
import { measure, type BenchResult } from './results.ts';

const NOOP_SINK = pathToFileURL(fileURLToPath(new URL('./noop-sink.ts', import.meta.url))).href.replace(/^file:/, 'module:');
const GROUP = 'workers';
const BULL_CONCURRENCY = 50;

export interface WorkerBenchOptions {
  entries: number;
  /** Worker process counts measured beside the single worker. */
  scaling: number[];
  log(line: string): void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until the group has delivered up to the stream's last entry and has nothing pending. */
async function drained(redis: Redis, stream: string): Promise<void> {
  const [last] = await redis.xrevrange(stream, '+', '-', 'COUNT', 1);
  for (;;) {
    const groups = (await redis.xinfo('GROUPS', stream)) as unknown[];
    const group = groups.map(pairs).find((g) => g.name === GROUP);
    if (group && group['last-delivered-id'] === last![0] && Number(group.pending) === 0) return;
    await sleep(10);
  }
}

async function consumersReading(redis: Redis, stream: string, count: number): Promise<void> {
  while (((await redis.xinfo('CONSUMERS', stream, GROUP)) as unknown[]).length < count) await sleep(20);
}

interface WorkerRun { perSecond: number; peakRssMb: number; steadyRssMb: number }

async function mailstreamWorkers(redis: LocalRedis, client: Redis, processes: number, entries: number, run: string): Promise<WorkerRun> {
  const account = `${run}@bench.mailstream.test`;
  const stream = accountKeys('mailstream', account).stream;
  await fillStream(client, stream, account, entries);
  // The group starts at the end, so the workers find nothing until every one of them has started
  // and is reading; then the group is moved back to the beginning and one more entry wakes them.
  // Process start-up (slow on a busy 2-core machine) stays out of the measurement.
  await client.xgroup('CREATE', stream, GROUP, '$');
  const workers: DaemonProcess[] = [];
  try {
    for (let i = 0; i < processes; i++) {
      workers.push(await spawnDaemon('worker', { env: { REDIS_URL: redis.url, IMAP_USER: account, SINK_URL: NOOP_SINK, LOG_LEVEL: 'warn' } }));
    }
    await Promise.all(workers.map((w) => waitUntilReady(w)));
    await consumersReading(client, stream, processes);
    const pid = workers[0]!.handle.child.pid!;
    const memory = watchMemory(pid);
    const started = Date.now();
    await client.xgroup('SETID', stream, GROUP, '0');
    await fillStream(client, stream, account, 1, entries);
    // As the producer does after an append: the workers wake on the signal, not at their next sweep.
    await announceEntries(client, accountKeys('mailstream', account));
    await drained(client, stream);
    const seconds = (Date.now() - started) / 1000;
    // Steady state: what the worker holds after the whole stream went through it.
    const steadyRssMb = memoryOf(pid)?.rssMb ?? Number.NaN;
    return { perSecond: (entries + 1) / seconds, peakRssMb: memory.stop().peakRssMb, steadyRssMb };
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    await client.del(stream);
  }
}

/**
 * Recovery: `entries` left pending by a worker that died holding them all, delivered by a live
 * worker that claims them as orphans. Measured from the moment they are claimable.
 */
async function recovery(redis: LocalRedis, client: Redis, entries: number): Promise<number> {
  const account = 'recovery@bench.mailstream.test';
  const stream = accountKeys('mailstream', account).stream;
  await fillStream(client, stream, account, entries);
  await client.xgroup('CREATE', stream, GROUP, '0');
  // The dead worker: it read everything, then died before delivering any of it.
  await client.xreadgroup('GROUP', GROUP, 'dead', 'COUNT', entries, 'STREAMS', stream, '>');
  // Claimable once idle this long: long enough for the live worker to start and be ready first,
  // so its start-up stays out of the measurement.
  const claimIdleMs = 4_000;
  const claimableAt = Date.now() + claimIdleMs;
  const worker = await spawnDaemon('worker', { env: {
    REDIS_URL: redis.url, IMAP_USER: account, SINK_URL: NOOP_SINK, LOG_LEVEL: 'warn', CLAIM_IDLE_MS: String(claimIdleMs), CLAIM_INTERVAL_MS: '100',
  } });
  try {
    await waitUntilReady(worker);
    const started = Math.max(Date.now(), claimableAt);
    await drained(client, stream);
    return entries / ((Date.now() - started) / 1000);
  } finally {
    await worker.stop();
    await client.del(stream);
  }
}

/** The ceiling: what a hand-written loop on one connection does, one pipeline per read batch. */
async function ioredisLoop(client: Redis, url: string, entries: number): Promise<number> {
  const account = 'ceiling@bench.mailstream.test';
  const keys = accountKeys('ceiling', account);
  const markers = keys.group(GROUP);
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
      for (const [, fields] of batch) pipeline.set(markers.delivered(fields[1]!), '1', 'EX', 86_400, 'NX');
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
  // Connected and ready before the clock starts, as the mailstream workers are.
  const worker = new BullWorker('bench', async () => undefined, { connection, concurrency: BULL_CONCURRENCY, autorun: false });
  await worker.waitUntilReady();
  let completed = 0;
  const finished = new Promise<void>((resolve) => {
    worker.on('completed', () => {
      completed += 1;
      if (completed === entries) resolve();
    });
  });
  const started = Date.now();
  void worker.run();
  await finished;
  const perSecond = entries / ((Date.now() - started) / 1000);
  await worker.close();
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
    const recoveryEntries = Math.min(2_000, entries);
    log(`worker: ${recoveryEntries} entries left pending by a dead worker, claimed and delivered by a live one`);
    const recovered = await recovery(redis, client, recoveryEntries);
    log('worker: plain ioredis XREADGROUP / SET NX / XACK loop');
    const ceiling = await ioredisLoop(client, redis.url, entries);
    log(`worker: BullMQ, no-op processor, concurrency ${BULL_CONCURRENCY}`);
    const bull = await bullmq(redis.url, entries);
    const scaled: BenchResult[] = [];
    for (const processes of options.scaling) {
      log(`worker: ${processes} worker processes`);
      const run = await mailstreamWorkers(redis, client, processes, entries, `w${processes}`);
      scaled.push(measure({ name: `worker_scaling_${processes}_processes`, value: run.perSecond, unit: 'emails/s', baseline: { name: '1 process', value: one.perSecond } }));
    }
    const unit = 'emails/s';
    return [
      measure({ name: 'worker_throughput_vs_ioredis_loop', value: one.perSecond, unit, baseline: { name: 'ioredis XREADGROUP/SET NX/XACK loop', value: ceiling }, target: { kind: 'ratio-at-least', ratio: 0.8 } }),
      measure({ name: 'worker_throughput_vs_bullmq', value: one.perSecond, unit, baseline: { name: `BullMQ no-op (concurrency ${BULL_CONCURRENCY})`, value: bull }, target: { kind: 'ratio-at-least', ratio: 3 } }),
      measure({ name: 'worker_recovery_vs_drain', value: recovered, unit, baseline: { name: 'normal drain, 1 worker', value: one.perSecond }, target: { kind: 'ratio-at-least', ratio: 0.5 } }),
      measure({ name: 'worker_scaling_1_process', value: one.perSecond, unit }),
      ...scaled,
      measure({ name: 'worker_steady_rss', value: one.steadyRssMb, unit: 'MB', target: { kind: 'below', value: 150 } }),
      measure({ name: 'worker_peak_rss', value: one.peakRssMb, unit: 'MB' }),
    ];
  } finally {
    client.disconnect();
    await redis.destroy();
  }
}
