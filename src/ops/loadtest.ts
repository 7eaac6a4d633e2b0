// `mailstream loadtest --emails N --workers N`: N sample emails seeded into a private Dovecot go
// through one `mailstream producer` and N `mailstream worker` processes (each to its own JSONL
// file); reports throughput and the append-to-sink latency percentiles. Redis is private too,
// unless the caller passes a Redis to use, where the run gets a key prefix of its own and removes
// its keys afterwards.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { sleep } from '../core/backoff.ts';
import { MailstreamError } from '../core/errors.ts';
import { accountKeys } from '../core/keys.ts';
import { closeRedis, createRedis, type RedisClient } from '../core/redis.ts';
import { trackDeliveries } from './deliveries.ts';
import { generateCorpus } from './local/sample-mail.ts';
import { assertAlive, spawnDaemon, startLocalStack, waitUntilReady, type DaemonProcess, type LocalStack } from './local/stack.ts';
import { summarize, type LatencySummary } from './percentiles.ts';

export interface LoadtestOptions {
  emails: number;
  workers: number;
  /** Use this Redis instead of a private one. */
  redisUrl?: string | undefined;
  seed?: number;
  /** Progress lines go here. */
  out: NodeJS.WritableStream;
  signal?: AbortSignal;
}

export interface LoadtestReport {
  emails: number;
  workers: number;
  delivered: number;
  duplicates: number;
  /** From the producer's first append to the last email seen in a sink. */
  seconds: number;
  emailsPerSecond: number;
  /** From the producer's first append until the stream held every email. */
  appendSeconds: number;
  /** Producer append to sink, per email. */
  latencySeconds: LatencySummary;
}

const TICK_MS = 100;
const STALL_MS = 180_000;

export async function runLoadtest(options: LoadtestOptions): Promise<LoadtestReport> {
  const { out } = options;
  const dir = mkdtempSync(join(tmpdir(), 'ms-loadtest-'));
  const prefix = options.redisUrl ? `loadtest-${randomBytes(4).toString('hex')}` : 'mailstream';
  const sinks = Array.from({ length: options.workers }, (_, i) => join(dir, `worker-${i + 1}.jsonl`));
  const deliveries = trackDeliveries(sinks);
  const daemons: DaemonProcess[] = [];
  let stack: LocalStack | undefined;
  let redis: RedisClient | undefined;
  try {
    stack = await startLocalStack({ redisUrl: options.redisUrl });
    stack.dovecot.seed(stack.user, 'INBOX', generateCorpus(options.emails, { seed: options.seed ?? 1, tag: 'load' }).map((m) => m.raw));
    out.write(`seeded ${options.emails} emails; starting ${options.workers} worker(s) and the producer\n`);
    const settings = { MAILSTREAM_PREFIX: prefix, LOG_LEVEL: 'warn' };
    for (const [i, sink] of sinks.entries()) {
      daemons.push(await spawnDaemon('worker', { env: stack.workerEnv(pathToFileURL(sink).href, settings), logFile: join(dir, `worker-${i + 1}.log`) }));
    }
    // Process start-up is not what is measured: the clock starts at the producer's first append.
    await Promise.all(daemons.map((d) => waitUntilReady(d)));
    redis = createRedis({ url: stack.redisUrl, name: 'mailstream:loadtest', maxRetriesPerRequest: 1 });
    const stream = accountKeys(prefix, stack.user).stream;
    daemons.push(await spawnDaemon('producer', { env: stack.producerEnv(settings), logFile: join(dir, 'producer.log') }));

    let progress = '';
    let lastChange = Date.now();
    while (deliveries.distinct() < options.emails) {
      if (options.signal?.aborted) throw new MailstreamError('ERR_LOADTEST', 'load test interrupted');
      assertAlive(daemons);
      deliveries.poll();
      const appended = await redis.xlen(stream);
      const now = `appended ${appended}/${options.emails}, delivered ${deliveries.distinct()}/${options.emails}`;
      if (now !== progress) { progress = now; lastChange = Date.now(); out.write(`${now}\n`); }
      if (Date.now() - lastChange > STALL_MS) throw new MailstreamError('ERR_LOADTEST', `no progress for ${STALL_MS / 1000} s (${now}); logs in ${dir}`);
      await sleep(TICK_MS, options.signal);
    }
    // Entry ids carry the append time: the first and last tell when the stream filled.
    const [first] = await redis.xrange(stream, '-', '+', 'COUNT', 1);
    const [last] = await redis.xrevrange(stream, '+', '-', 'COUNT', 1);
    const idTime = (entry: [string, string[]] | undefined) => Number(entry![0].split('-')[0]);
    const startedAt = idTime(first);
    const seconds = (deliveries.lastSeenAt() - startedAt) / 1000;
    return {
      emails: options.emails,
      workers: options.workers,
      delivered: deliveries.distinct(),
      duplicates: deliveries.duplicates(),
      seconds,
      emailsPerSecond: options.emails / seconds,
      appendSeconds: (idTime(last) - startedAt) / 1000,
      latencySeconds: summarize(deliveries.appendToSinkSeconds()),
    };
  } finally {
    deliveries.close();
    for (const daemon of [...daemons].reverse()) await daemon.stop();
    if (redis && options.redisUrl) await removeKeys(redis, prefix);
    if (redis) await closeRedis(redis);
    await stack?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** On a shared Redis, leave nothing of the run behind. */
async function removeKeys(redis: RedisClient, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
    cursor = next;
    if (keys.length > 0) await redis.unlink(...keys);
  } while (cursor !== '0');
}

export function formatLoadtest(report: LoadtestReport): string {
  const ms = (s: number) => `${(s * 1000).toFixed(0)} ms`;
  const l = report.latencySeconds;
  return [
    `emails     ${report.delivered}/${report.emails} delivered, ${report.duplicates} duplicates, ${report.workers} worker(s)`,
    `throughput ${report.emailsPerSecond.toFixed(0)} emails/s (${report.seconds.toFixed(2)} s from the first append to the last delivery; stream filled in ${report.appendSeconds.toFixed(2)} s)`,
    `latency    append -> sink  p50 ${ms(l.p50)}  p95 ${ms(l.p95)}  p99 ${ms(l.p99)}  max ${ms(l.max)}`,
    '',
  ].join('\n');
}
