// A quiet account beside a busy one: one account backfills a large mailbox while mail arrives in
// another, both read by one producer and delivered by one worker to a JSONL sink. Each quiet
// email is timed from the moment its APPEND completed to its line in the sink (as
// bench/latency.ts does), for as long as the busy account's backlog is still on its way.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ImapFlow } from 'imapflow';
import { accountKeys } from '../src/core/keys.ts';
import { tailJsonl } from '../src/ops/jsonl-tail.ts';
import { generateCorpus } from '../src/ops/local/sample-mail.ts';
import { assertAlive, spawnDaemon, waitUntilReady, type DaemonProcess } from '../src/ops/local/stack.ts';
import { sleep } from './scale-probes.ts';
import type { ScaleStack } from './scale-stack.ts';

export interface BackfillOptions {
  /** Emails waiting in the busy account's INBOX. */
  backlog: number;
  /** One quiet email every this many ms while the backlog is delivered. */
  quietEveryMs: number;
  log(line: string): void;
}

export interface BackfillRun {
  /** Append-to-sink seconds of each quiet email that arrived. */
  latencies: number[];
  quietSent: number;
  /** From the first busy entry in the stream to the last busy email in the sink. */
  backfillSeconds: number;
}

const SEED_CHUNK = 5_000;
/** Bound on the whole backfill (a stuck pipeline must not hang the bench). */
const BACKFILL_LIMIT_MS = 20 * 60_000;
/** Bound on waiting for the last quiet emails once the backlog is through. */
const SETTLE_MS = 30_000;

function seedBacklog(stack: ScaleStack, backlog: number): void {
  for (let done = 0; done < backlog; done += SEED_CHUNK) {
    const raws = generateCorpus(Math.min(SEED_CHUNK, backlog - done), { seed: 1000 + done, tag: `busy-${done}` }).map((m) => m.raw);
    stack.dovecot.seed(stack.busy, 'INBOX', raws);
  }
}

export async function quietBesideBackfill(stack: ScaleStack, options: BackfillOptions): Promise<BackfillRun> {
  const { log } = options;
  log(`scale: seeding ${options.backlog} emails in the busy account`);
  seedBacklog(stack, options.backlog);
  const dir = mkdtempSync(join(tmpdir(), 'ms-bench-quiet-'));
  const sinkFile = join(dir, 'sink.jsonl');
  const accountsFile = stack.accountsFile([stack.busy, stack.quiet]);
  const prefix = 'backfill';
  const appendedAt = new Map<string, number>();
  const early = new Set<string>();
  const latencies: number[] = [];
  let busyDelivered = 0;
  let lastBusyAt = 0;
  const tail = tailJsonl(sinkFile, {
    intervalMs: 10,
    onLine(line, seenAt) {
      if (line.account !== stack.quiet) { busyDelivered += 1; lastBusyAt = seenAt; return; }
      const id = String(line.messageId);
      const sent = appendedAt.get(id);
      if (sent !== undefined) { latencies.push(Math.max(0, seenAt - sent) / 1000); appendedAt.delete(id); }
      else early.add(id);
    },
  });
  const client = stack.redis.client();
  const daemons: DaemonProcess[] = [];
  let imap: ImapFlow | undefined;
  try {
    const worker = await spawnDaemon('worker', { env: stack.workerEnv(accountsFile, pathToFileURL(sinkFile).href, { MAILSTREAM_PREFIX: prefix }) });
    daemons.push(worker);
    await waitUntilReady(worker);
    const login = stack.login(stack.quiet);
    imap = new ImapFlow({
      host: login.host, port: login.port, secure: true, logger: false,
      tls: { ca: readFileSync(login.caFile), servername: 'localhost' }, auth: { user: login.user, pass: login.pass },
    });
    await imap.connect();
    const producer = await spawnDaemon('producer', { env: stack.producerEnv(accountsFile, { MAILSTREAM_PREFIX: prefix }) });
    daemons.push(producer);
    const busyStream = accountKeys(prefix, stack.busy).stream;
    const deadline = Date.now() + BACKFILL_LIMIT_MS;
    while ((await client.xlen(busyStream)) === 0) {
      assertAlive(daemons);
      if (Date.now() > deadline) throw new Error('the busy account\'s backfill never started');
      await sleep(20);
    }
    const firstBusyAt = Date.now();
    log(`scale: backfill under way; a quiet email every ${options.quietEveryMs} ms until the backlog is in the sink`);
    let quietSent = 0;
    const started = Date.now();
    while (busyDelivered < options.backlog) {
      assertAlive(daemons);
      if (Date.now() > deadline) throw new Error(`backfill not through after ${BACKFILL_LIMIT_MS / 60_000} min: ${busyDelivered} of ${options.backlog} in the sink`);
      const [mail] = generateCorpus(1, { seed: 50_000 + quietSent, tag: `quiet-${quietSent}`, mix: { malformed: 0, 'no-message-id': 0 } });
      await imap.append('INBOX', mail!.raw);
      if (early.delete(mail!.messageId!)) latencies.push(0);
      else appendedAt.set(mail!.messageId!, Date.now());
      quietSent += 1;
      await sleep(Math.max(0, started + quietSent * options.quietEveryMs - Date.now()));
    }
    const settle = Date.now() + SETTLE_MS;
    while (latencies.length < quietSent && Date.now() < settle) await sleep(20);
    return { latencies, quietSent, backfillSeconds: (lastBusyAt - firstBusyAt) / 1000 };
  } finally {
    tail.close();
    await imap?.logout().catch(() => imap?.close());
    for (const daemon of daemons.reverse()) await daemon.stop();
    client.disconnect();
    rmSync(dir, { recursive: true, force: true });
  }
}
