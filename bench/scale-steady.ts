// One mailbox under a steady flow: mail APPENDed at a fixed rate for a while, read by a producer
// on IDLE and delivered by a worker to a no-op sink. What it measures is the producer's memory:
// its peak (VmHWM, start-up included) and the largest RSS sampled once mail flows.
import { readFileSync } from 'node:fs';
import { ImapFlow } from 'imapflow';
import { accountKeys } from '../src/core/keys.ts';
import { generateCorpus } from '../src/ops/local/sample-mail.ts';
import { assertAlive, spawnDaemon, waitUntilReady, type DaemonProcess } from '../src/ops/local/stack.ts';
import { watchMemory, type MemorySample } from './proc-stats.ts';
import { NOOP_SINK } from './scale-idle.ts';
import { allIdle, sleep, waitForMailboxes } from './scale-probes.ts';
import type { ScaleStack } from './scale-stack.ts';

export interface SteadyOptions { seconds: number; perSecond: number; log(line: string): void }

export interface SteadyRun {
  memory: MemorySample;
  sent: number;
  /** Entries added to the stream by a few seconds after the flow stopped. */
  appended: number;
  /** Emails APPENDed per second, from the first to the last APPEND's completion. */
  arrivalRate: number;
}

const SENDERS = 4;

export async function steadyFlow(stack: ScaleStack, options: SteadyOptions): Promise<SteadyRun> {
  const prefix = 'steady';
  const accountsFile = stack.accountsFile([stack.steady]);
  const client = stack.redis.client();
  const daemons: DaemonProcess[] = [];
  const senders: ImapFlow[] = [];
  let memory: { stop(): MemorySample } | undefined;
  try {
    const worker = await spawnDaemon('worker', { env: stack.workerEnv(accountsFile, NOOP_SINK, { MAILSTREAM_PREFIX: prefix }) });
    daemons.push(worker);
    const producer = await spawnDaemon('producer', { env: stack.producerEnv(accountsFile, { MAILSTREAM_PREFIX: prefix }) });
    daemons.push(producer);
    memory = watchMemory(producer.handle.child.pid!, 500);
    await waitUntilReady(worker);
    await waitForMailboxes([producer], allIdle([`${stack.steady}/INBOX`]), { since: Date.now(), timeoutMs: 120_000, what: 'the mailbox in IDLE' });
    // One connection APPENDs one message at a time (a round trip each, slow on a loaded machine):
    // a few take turns so the arrivals keep to the clock.
    const login = stack.login(stack.steady);
    for (let i = 0; i < SENDERS; i++) {
      const imap = new ImapFlow({
        host: login.host, port: login.port, secure: true, logger: false,
        tls: { ca: readFileSync(login.caFile), servername: 'localhost' }, auth: { user: login.user, pass: login.pass },
      });
      await imap.connect();
      senders.push(imap);
    }
    options.log(`scale: ${options.perSecond} emails/s into one mailbox for ${options.seconds} s`);
    const gap = 1000 / options.perSecond;
    const queues = senders.map(() => Promise.resolve());
    const started = Date.now();
    let sent = 0;
    for (let second = 0; second < options.seconds; second++) {
      assertAlive(daemons);
      for (const mail of generateCorpus(options.perSecond, { seed: 70_000 + second, tag: `steady-${second}` })) {
        await sleep(Math.max(0, started + sent * gap - Date.now()));
        const turn = sent % SENDERS;
        queues[turn] = queues[turn]!.then(async () => { await senders[turn]!.append('INBOX', mail.raw); });
        sent += 1;
      }
    }
    await Promise.all(queues);
    const arrivalRate = sent / ((Date.now() - started) / 1000);
    // Acknowledged entries may be trimmed meanwhile: count what was ever added.
    const stream = accountKeys(prefix, stack.steady).stream;
    const added = async () => {
      const info = await client.xinfo('STREAM', stream) as unknown[];
      return Number(info[info.indexOf('entries-added') + 1]);
    };
    const settle = Date.now() + 10_000;
    let appended = await added();
    while (appended < sent && Date.now() < settle) { await sleep(100); appended = await added(); }
    return { memory: memory.stop(), sent, appended, arrivalRate };
  } finally {
    memory?.stop();
    await Promise.all(senders.map((imap) => imap.logout().catch(() => imap.close())));
    for (const daemon of daemons.reverse()) await daemon.stop();
    client.disconnect();
  }
}
