// `mailstream demo`: the whole pipeline on this machine with nothing configured. A private Redis
// and Dovecot, sample mail seeded into the mailbox, `mailstream producer` and `mailstream worker`
// as child processes writing to demo-output/emails.jsonl, live counts, then a few new emails
// delivered through IMAP APPEND (the producer hears of them through IDLE). The producer keeps raw
// sources, attachments and long bodies in a file blob store, demo-output/blobs. Everything it
// starts it stops again, on completion, on Ctrl-C/SIGTERM, or when a part fails.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { sleep } from '../../core/backoff.ts';
import { MailstreamError } from '../../core/errors.ts';
import { accountKeys } from '../../core/keys.ts';
import { closeRedis, createRedis } from '../../core/redis.ts';
import { isRunning, spawnChild, type ChildHandle, type SpawnFn } from '../local/child-process.ts';
import { generateCorpus } from '../local/sample-mail.ts';
import { assertAlive, spawnDaemon, startLocalStack, type DaemonProcess, type LocalStack } from '../local/stack.ts';
import { trackDeliveries } from '../deliveries.ts';
import { progressView } from './progress.ts';

export interface DemoOptions {
  emails: number;
  /** New emails delivered through IMAP once the seeded ones are through. */
  live: number;
  /** Stop after this many seconds (undefined: run until Ctrl-C). */
  durationSeconds: number | undefined;
  /** Stop once every seeded and live email reached the output file. */
  exitWhenDone: boolean;
  seed: number;
  /** demo-output/ of the current directory. */
  outDir: string;
  out: NodeJS.WritableStream & { isTTY?: boolean };
  /** Aborted by Ctrl-C / SIGTERM. */
  signal: AbortSignal;
}

export interface DemoResult {
  expected: number;
  delivered: number;
  duplicates: number;
  /** Every process the demo started, by pid, and whether it is still running (it never should be). */
  processes: Array<{ name: string; pid: number; running: boolean }>;
}

const PREFIX = 'mailstream';
const TICK_MS = 250;
/** With --exit-when-done, give up when nothing moved for this long (a part is stuck). */
const STALL_MS = 180_000;
const LIVE_GAP_MS = 1_000;

export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  const { out, signal } = options;
  const started: Array<{ name: string; handle: ChildHandle }> = [];
  // Own process groups: a Ctrl-C at the terminal reaches only the demo, which stops the rest in order.
  const spawn: SpawnFn = (command, args, spawnOptions) => {
    const handle = spawnChild(command, args, { ...spawnOptions, detached: true });
    started.push({ name: command === process.execPath ? String(args[args.length - 1]) : command, handle });
    return handle;
  };
  mkdirSync(options.outDir, { recursive: true });
  const outputFile = join(options.outDir, 'emails.jsonl');
  const logs = { producer: join(options.outDir, 'producer.log'), worker: join(options.outDir, 'worker.log') };
  const blobDir = join(options.outDir, 'blobs');
  for (const file of [outputFile, ...Object.values(logs)]) rmSync(file, { force: true });
  rmSync(blobDir, { recursive: true, force: true });
  const blobs = { BLOB_STORE_URL: pathToFileURL(blobDir).href };

  const expected = options.emails + options.live;
  const deliveries = trackDeliveries([outputFile]);
  const view = progressView(out);
  let stack: LocalStack | undefined;
  const daemons: DaemonProcess[] = [];
  let redis: ReturnType<typeof createRedis> | undefined;
  try {
    out.write('Starting a private Redis and Dovecot (TLS, password login)...\n');
    stack = await startLocalStack({ spawn });
    const mails = generateCorpus(options.emails, { seed: options.seed, tag: 'demo' });
    stack.dovecot.seed(stack.user, 'INBOX', mails.map((m) => m.raw));
    out.write(`Seeded ${mails.length} sample emails into ${stack.user}'s INBOX.\n`);

    const sinkUrl = pathToFileURL(outputFile).href;
    daemons.push(await spawnDaemon('producer', { env: stack.producerEnv(blobs), logFile: logs.producer, spawn, detached: true }));
    daemons.push(await spawnDaemon('worker', { env: stack.workerEnv(sinkUrl, blobs), logFile: logs.worker, spawn, detached: true }));
    printWhereToLook(out, stack, daemons, outputFile, logs, blobs.BLOB_STORE_URL);

    redis = createRedis({ url: stack.redisUrl, name: 'mailstream:demo', maxRetriesPerRequest: 1 });
    const stream = accountKeys(PREFIX, stack.user).stream;
    const deadline = options.durationSeconds === undefined ? Infinity : Date.now() + options.durationSeconds * 1000;
    let appended = 0;
    let lastChange = Date.now();
    let lastCounts = '';
    let liveSent = 0;
    let announcedDone = false;
    let nextLiveAt = 0;
    const liveMails = generateCorpus(options.live, { seed: options.seed + 1, tag: 'demo-live' });

    while (!signal.aborted && Date.now() < deadline) {
      assertAlive(daemons);
      deliveries.poll();
      appended = await redis.xlen(stream).catch(() => appended);
      const counts = { appended, delivered: deliveries.distinct(), expected };
      view.update(counts);
      const key = `${counts.appended}/${counts.delivered}`;
      if (key !== lastCounts) { lastCounts = key; lastChange = Date.now(); }

      if (deliveries.distinct() >= options.emails && liveSent < options.live && Date.now() >= nextLiveAt) {
        if (liveSent === 0) view.note(`All ${options.emails} seeded emails delivered. Now ${options.live} new ones arrive by IMAP APPEND; the producer hears of them through IDLE.`);
        await stack.dovecot.append(stack.user, 'INBOX', [liveMails[liveSent]!.raw]);
        liveSent += 1;
        lastChange = Date.now();
        nextLiveAt = Date.now() + LIVE_GAP_MS;
      }
      if (deliveries.distinct() >= expected && liveSent === options.live) {
        if (options.exitWhenDone) break;
        if (!announcedDone) {
          view.note(`Done: ${expected} emails delivered. The pipeline keeps running; press Ctrl-C to stop everything.`);
          announcedDone = true;
        }
      } else if (options.exitWhenDone && Date.now() - lastChange > STALL_MS) {
        throw new MailstreamError('ERR_DEMO', `no progress for ${STALL_MS / 1000} s; see ${logs.producer} and ${logs.worker}`);
      }
      await sleep(TICK_MS, signal);
    }
    deliveries.poll();
    view.update({ appended, delivered: deliveries.distinct(), expected });
  } finally {
    view.done();
    deliveries.close();
    if (redis) await closeRedis(redis);
    out.write('Stopping the worker, the producer, Dovecot and Redis...\n');
    for (const daemon of [...daemons].reverse()) await daemon.stop();
    await stack?.stop();
  }
  const duplicates = deliveries.duplicates();
  const processes = started.map(({ name, handle }) => ({ name, pid: handle.child.pid ?? 0, running: isRunning(handle) }));
  out.write(`Delivered ${deliveries.distinct()} of ${expected} emails to ${outputFile} (${duplicates} duplicates).\n`);
  out.write(`Stopped: ${processes.map((p) => `${p.name} (pid ${p.pid})`).join(', ')}.\n`);
  return { expected, delivered: deliveries.distinct(), duplicates, processes };
}

function printWhereToLook(out: NodeJS.WritableStream, stack: LocalStack, daemons: DaemonProcess[], outputFile: string, logs: Record<string, string>, blobStoreUrl: string): void {
  const lines = [
    '',
    'Where to look:',
    ...daemons.map((d) => `  ${d.role.padEnd(8)} ${d.httpUrl}/metrics  ${d.httpUrl}/status  ${d.httpUrl}/ready  (log: ${logs[d.role]})`),
    `  output   ${outputFile}  (one JSON email per line)`,
    `  blobs    ${fileURLToPath(blobStoreUrl)}  (raw sources, attachments, long bodies; each email's raw.ref and attachments[].ref point here)`,
    `  redis    ${stack.redisUrl}  (stream ${accountKeys(PREFIX, stack.user).stream})`,
    '  try, in another terminal:',
    `    REDIS_URL=${stack.redisUrl} IMAP_USER=${stack.user} npx mailstream status`,
    `    BLOB_STORE_URL=${blobStoreUrl} npx mailstream blob stat`,
    '',
  ];
  out.write(`${lines.join('\n')}\n`);
}
