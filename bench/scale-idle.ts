// What idle mailboxes cost: one producer over N accounts of one INBOX each, from its start until
// every mailbox is in IDLE, then its resident memory; a worker over the same N accounts (a no-op
// sink) and the Redis connections it holds; Redis used_memory with both idle; and, when asked,
// the CPU both use over a window in which nothing arrives.
import { fileURLToPath, pathToFileURL } from 'node:url';
import { spawnDaemon, waitUntilReady, type DaemonProcess } from '../src/ops/local/stack.ts';
import { memoryOf } from './proc-stats.ts';
import { allIdle, cpuShare, redisConnectionsOf, sleep, threadCpu, usedMemory, waitForMailboxes } from './scale-probes.ts';
import type { ScaleStack } from './scale-stack.ts';

const MB = 1024 * 1024;

export const NOOP_SINK = pathToFileURL(fileURLToPath(new URL('./noop-sink.ts', import.meta.url))).href.replace(/^file:/, 'module:');

export interface IdleRun {
  mailboxes: number;
  /** From spawning the producer to every mailbox seen in IDLE. */
  timeToIdleSeconds: number;
  producerRssMb: number;
  /** The main thread's V8 heap in use and the memory outside it (buffers, TLS) per its /metrics. */
  producerHeapUsedMb: number;
  producerExternalMb: number;
  workerRedisConnections: number;
  /** used_memory with producer and worker idle, less that of the emptied Redis. */
  redisBytes: number;
  /** Share of one core over the idle window (only when `idleCpuSeconds` was given). */
  producerIdleCpu?: number;
  workerIdleCpu?: number;
}

export interface IdleRunOptions {
  /** Wait after the last mailbox went idle before reading memory (start-up garbage collected). */
  settleMs: number;
  idleCpuSeconds?: number;
  log(line: string): void;
}

/** Median of a few RSS readings a second apart (one reading can catch a GC half-way). */
async function steadyRss(pid: number, readings = 3): Promise<number> {
  const values: number[] = [];
  for (let i = 0; i < readings; i++) {
    if (i > 0) await sleep(1000);
    const m = memoryOf(pid);
    if (m) values.push(m.rssMb);
  }
  values.sort((a, b) => a - b);
  return values[Math.floor(values.length / 2)] ?? Number.NaN;
}

/** Log lines (JSON) counted by level and message. */
function logMessages(output: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const { level, msg } = JSON.parse(line) as { level?: unknown; msg?: unknown };
      const key = `${String(level)} ${String(msg)}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    } catch {
      // a line cut by the pipe
    }
  }
  return counts;
}

/** Unlabelled series of a daemon's /metrics (prom-client's process and Node.js figures), read at once. */
async function metrics(daemon: DaemonProcess, names: readonly string[]): Promise<number[]> {
  const text = await (await fetch(`${daemon.httpUrl}/metrics`)).text();
  return names.map((name) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN));
}

/**
 * The worker's Redis connections once it has settled: read until two readings a second apart
 * agree (connections are opened as the read loops start).
 */
export async function settledConnections(stack: ScaleStack, worker: DaemonProcess): Promise<number> {
  const client = stack.redis.client();
  try {
    let last = -1;
    for (let i = 0; i < 30; i++) {
      const now = await redisConnectionsOf(worker.handle.child.pid!, client, stack.redis.port);
      if (now === last && now > 0) return now;
      last = now;
      await sleep(1000);
    }
    return last;
  } finally {
    client.disconnect();
  }
}

/** A worker alone over the first `accounts` accounts: the Redis connections it holds. */
export async function workerConnectionsAlone(stack: ScaleStack, accounts: number): Promise<number> {
  const client = stack.redis.client();
  await client.flushall();
  client.disconnect();
  const worker = await spawnDaemon('worker', { env: stack.workerEnv(stack.accountsFile(stack.users.slice(0, accounts)), NOOP_SINK, { MAILSTREAM_PREFIX: 'scale' }) });
  try {
    await waitUntilReady(worker);
    return await settledConnections(stack, worker);
  } finally {
    await worker.stop();
  }
}

export async function idleRun(stack: ScaleStack, mailboxes: number, options: IdleRunOptions): Promise<IdleRun> {
  const { log } = options;
  const users = stack.users.slice(0, mailboxes);
  const accountsFile = stack.accountsFile(users);
  const client = stack.redis.client();
  const daemons: DaemonProcess[] = [];
  try {
    await client.flushall();
    const empty = await usedMemory(client);
    const since = Date.now();
    const producer = await spawnDaemon('producer', { env: stack.producerEnv(accountsFile, { MAILSTREAM_PREFIX: 'scale' }) });
    daemons.push(producer);
    const timeToIdleSeconds = await waitForMailboxes([producer], allIdle(users.map((u) => `${u}/INBOX`)), {
      since, timeoutMs: 10 * 60_000, what: `${mailboxes} mailboxes in IDLE`, intervalMs: mailboxes > 200 ? 1000 : 250,
    });
    log(`scale: ${mailboxes} mailboxes in IDLE after ${timeToIdleSeconds.toFixed(1)} s`);
    await sleep(options.settleMs);
    const producerRssMb = await steadyRss(producer.handle.child.pid!);
    const [heapBytes, externalBytes] = await metrics(producer, ['nodejs_heap_size_used_bytes', 'nodejs_external_memory_bytes']);
    const producerHeapUsedMb = heapBytes! / MB;
    const producerExternalMb = externalBytes! / MB;

    const worker = await spawnDaemon('worker', { env: stack.workerEnv(accountsFile, NOOP_SINK, { MAILSTREAM_PREFIX: 'scale' }) });
    daemons.push(worker);
    await waitUntilReady(worker);
    const workerRedisConnections = await settledConnections(stack, worker);
    const redisBytes = (await usedMemory(client)) - empty;
    log(`scale: ${mailboxes} accounts: producer ${producerRssMb.toFixed(0)} MB (heap ${producerHeapUsedMb.toFixed(0)} MB), worker ${workerRedisConnections} Redis connections, Redis +${(redisBytes / 1024 / 1024).toFixed(1)} MB`);

    const run: IdleRun = { mailboxes, timeToIdleSeconds, producerRssMb, producerHeapUsedMb, producerExternalMb, workerRedisConnections, redisBytes };
    const seconds = options.idleCpuSeconds;
    if (seconds) {
      log(`scale: CPU of the idle producer and worker over ${seconds} s`);
      const logged = producer.handle.output().length;
      const threadsBefore = threadCpu(producer.handle.child.pid!);
      const [producerCpu, workerCpu] = await cpuShare([producer.handle.child.pid!, worker.handle.child.pid!], seconds);
      // Where the producer's share went: its threads, user and system time apart.
      const byThread = [...threadCpu(producer.handle.child.pid!)].flatMap(([name, after]) => {
        const before = threadsBefore.get(name) ?? { user: 0, system: 0 };
        const [user, system] = [(after.user - before.user) / seconds, (after.system - before.system) / seconds];
        return user + system < 0.0005 ? [] : [`${name} ${user.toFixed(3)} user + ${system.toFixed(3)} system`];
      });
      log(`scale: the idle producer's threads (share of a core): ${byThread.join('; ')}`);
      // Nothing should be said while nothing happens: name what was (LOG_LEVEL=warn).
      const said = logMessages(producer.handle.output().slice(logged));
      if (said.size > 0) log(`scale: the idle producer logged ${[...said].map(([msg, n]) => `${n} x "${msg}"`).join(', ')}`);
      run.producerIdleCpu = producerCpu;
      run.workerIdleCpu = workerCpu;
    }
    return run;
  } finally {
    for (const daemon of daemons.reverse()) await daemon.stop();
    client.disconnect();
  }
}
