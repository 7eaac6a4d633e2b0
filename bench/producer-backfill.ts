// Producer backfill: `mailstream producer` reading N mixed emails from a private Dovecot over TLS
// into a private Redis, beside a plain sequential loop over the same mailbox (fetch a batch,
// simpleParser each, XADD each) and mailparser alone on the same messages (the parse ceiling).
// Also: Redis memory per 1,000 entries, the producer's peak RSS with a 25 MB attachment, and the
// same backfill with a file blob store (raw sources and attachments out of Redis) beside the run
// without one: its speed and the bytes each entry takes in the stream; the store once more on
// tmpfs, where the disk costs nothing and what remains is the code's own cost.
// On a shared machine the load moves between one measurement and the next, so each throughput is
// measured in two rounds, the measurements taking turns, and each figure is its round's best.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImapFlow } from 'imapflow';
import type { Redis } from 'ioredis';
import { simpleParser, type AddressObject } from 'mailparser';
import { accountKeys } from '../src/core/keys.ts';
import { parseThreadCount } from '../src/producer/parse-pool.ts';
import { contentHash, generateCorpus } from '../src/ops/local/sample-mail.ts';
import { spawnDaemon, startLocalStack, type LocalStack } from '../src/ops/local/stack.ts';
import { watchMemory, type MemorySample } from './proc-stats.ts';
import { measure, type BenchResult } from './results.ts';

export interface ProducerBenchOptions {
  emails: number;
  log(line: string): void;
  /** Where the file blob store's temporary directory goes (its filesystem decides much). @default os.tmpdir() */
  blobDir?: string | undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const FETCH_BATCH = 500;

interface ProducerRun { perSecond: number; memory: MemorySample; redisBytes: number; medianEntryBytes: number }

/** The median of what one entry holds in the stream: its key and email fields. */
async function medianEntryBytes(client: Redis, stream: string): Promise<number> {
  const sizes: number[] = [];
  for (let start = '-'; ;) {
    const page = await client.xrange(stream, start, '+', 'COUNT', 1000);
    for (const [, fields] of page) sizes.push(fields.reduce((sum, f) => sum + Buffer.byteLength(f), 0));
    if (page.length < 1000) break;
    start = `(${page[page.length - 1]![0]}`;
  }
  sizes.sort((a, b) => a - b);
  return sizes.length ? sizes[Math.floor(sizes.length / 2)]! : NaN;
}

/** Runs the producer on one mailbox until the stream holds `expected` entries. */
async function runProducer(stack: LocalStack, mailbox: string, prefix: string, expected: number, extraEnv: Record<string, string> = {}): Promise<ProducerRun> {
  const client = stack.redis!.client();
  const stream = accountKeys(prefix, stack.user).stream;
  const before = Number(/used_memory:(\d+)/.exec(await client.info('memory'))?.[1]);
  // The default batch (200) on 10,000 emails; a small run (--quick) gets smaller batches, so the
  // clock, which starts at the first batch seen, has several more to time.
  const spawnedAt = Date.now();
  const batch = String(Math.min(200, Math.max(5, Math.floor(expected / 20))));
  const producer = await spawnDaemon('producer', { env: stack.producerEnv({ MAILSTREAM_PREFIX: prefix, IMAP_MAILBOXES: mailbox, LOG_LEVEL: 'warn', FETCH_BATCH_SIZE: batch, ...extraEnv }) });
  const memory = watchMemory(producer.handle.child.pid!, 20);
  try {
    let first = { at: 0, length: 0 };
    for (;;) {
      if (producer.handle.child.exitCode !== null) throw new Error(`producer exited: ${producer.handle.output().slice(-2000)}`);
      const length = await client.xlen(stream);
      if (!first.at && length > 0) first = { at: Date.now(), length };
      if (length >= expected) {
        const seconds = (Date.now() - first.at) / 1000;
        const after = Number(/used_memory:(\d+)/.exec(await client.info('memory'))?.[1]);
        // Everything in one look (a tiny run): time it from the start of the process instead.
        const perSecond = seconds > 0 && first.length < expected ? (expected - first.length) / seconds : expected / ((Date.now() - spawnedAt) / 1000);
        return { perSecond, memory: memory.stop(), redisBytes: after - before, medianEntryBytes: await medianEntryBytes(client, stream) };
      }
      await sleep(10);
    }
  } finally {
    // Also when the producer failed: a sampler left running keeps the bench process alive.
    memory.stop();
    await producer.stop();
    client.disconnect();
  }
}

const addresses = (a: AddressObject | AddressObject[] | undefined) => (Array.isArray(a) ? a : a ? [a] : []).flatMap((o) => o.value.map((v) => ({ name: v.name, address: v.address ?? '' })));

/** What a straightforward first implementation does: one message at a time, one await per step. */
async function sequentialLoop(stack: LocalStack, prefix: string, expected: number): Promise<number> {
  const client = stack.redis!.client();
  const stream = accountKeys(prefix, stack.user).stream;
  const env = stack.producerEnv();
  const imap = new ImapFlow({
    host: '127.0.0.1', port: stack.dovecot.tlsPort, secure: true, logger: false,
    tls: { ca: readFileSync(stack.dovecot.caFile), servername: 'localhost' },
    auth: { user: stack.user, pass: env.IMAP_PASSWORD! },
  });
  await imap.connect();
  try {
    await imap.mailboxOpen('INBOX');
    let started = 0;
    let done = 0;
    for (let from = 1; done < expected; from += FETCH_BATCH) {
      const batch: Array<{ uid: number; source: Buffer }> = [];
      for await (const m of imap.fetch(`${from}:${from + FETCH_BATCH - 1}`, { uid: true, source: true }, { uid: true })) batch.push({ uid: m.uid, source: m.source! });
      if (batch.length === 0) break;
      for (const { uid, source } of batch) {
        const parsed = await simpleParser(source);
        const email = {
          v: 1, account: stack.user, mailbox: 'INBOX', uid, messageId: parsed.messageId ?? null,
          envelope: { date: parsed.date?.toISOString() ?? null, subject: parsed.subject ?? null, from: addresses(parsed.from), to: addresses(parsed.to) },
          text: parsed.text ?? null, html: parsed.html || null,
          attachments: parsed.attachments.map((a) => ({ filename: a.filename ?? null, contentType: a.contentType, size: a.size, checksum: a.checksum })),
          size: source.length, ingestedAt: new Date().toISOString(),
        };
        if (!started) started = Date.now();
        await client.xadd(stream, '*', 'key', parsed.messageId ?? contentHash(source), 'email', JSON.stringify(email));
        done += 1;
      }
    }
    return done / ((Date.now() - started) / 1000);
  } finally {
    await imap.logout().catch(() => imap.close());
    client.disconnect();
  }
}

async function parseCeiling(raws: Buffer[]): Promise<number> {
  const started = Date.now();
  for (const raw of raws) await simpleParser(raw);
  return raws.length / ((Date.now() - started) / 1000);
}

/** The backfill with a file blob store in a new directory under `parent`. */
async function runWithStore(stack: LocalStack, prefix: string, expected: number, parent: string): Promise<ProducerRun> {
  const blobDir = mkdtempSync(join(parent, 'ms-bench-blobs-'));
  try {
    return await runProducer(stack, 'INBOX', prefix, expected, { BLOB_STORE_URL: `file://${blobDir}` });
  } finally {
    rmSync(blobDir, { recursive: true, force: true });
  }
}

/** The run of the highest throughput (the one the machine's other load disturbed least). */
const best = <T extends { perSecond: number }>(runs: T[]): T => runs.reduce((a, b) => (b.perSecond > a.perSecond ? b : a));

const TMPFS = '/dev/shm';

export async function benchProducer(options: ProducerBenchOptions): Promise<BenchResult[]> {
  const { emails, log } = options;
  // A smoke run (--quick) measures once.
  const rounds = emails >= 1000 ? 2 : 1;
  const stack = await startLocalStack();
  try {
    const raws = generateCorpus(emails, { seed: 7, tag: 'bench' }).map((m) => m.raw);
    stack.dovecot.seed(stack.user, 'INBOX', raws);
    const runs = { ours: [] as ProducerRun[], withStore: [] as ProducerRun[], onTmpfs: [] as ProducerRun[], sequential: [] as Array<{ perSecond: number }>, ceiling: [] as Array<{ perSecond: number }> };
    for (let round = 1; round <= rounds; round++) {
      const of = rounds > 1 ? ` (round ${round} of ${rounds})` : '';
      log(`producer: backfill of ${emails} mixed emails over TLS with mailstream producer${of}`);
      runs.ours.push(await runProducer(stack, 'INBOX', `mailstream-${round}`, emails));
      log(`producer: the same backfill with a file blob store${of}`);
      runs.withStore.push(await runWithStore(stack, `blobs-${round}`, emails, options.blobDir ?? tmpdir()));
      if (existsSync(TMPFS)) {
        log(`producer: the same with the store on tmpfs (${TMPFS})${of}`);
        runs.onTmpfs.push(await runWithStore(stack, `tmpfs-${round}`, emails, TMPFS));
      }
      log(`producer: sequential loop (fetch batch, simpleParser each, XADD each)${of}`);
      runs.sequential.push({ perSecond: await sequentialLoop(stack, `sequential-${round}`, emails) });
      log(`producer: mailparser alone on the same messages${of}`);
      runs.ceiling.push({ perSecond: await parseCeiling(raws) });
    }
    const ours = best(runs.ours);
    const withStore = best(runs.withStore);
    const sequential = best(runs.sequential).perSecond;
    const ceiling = best(runs.ceiling).perSecond;
    const threads = parseThreadCount(0);

    log('producer: one 25 MB attachment among 20 ordinary emails');
    const huge = [...generateCorpus(20, { seed: 9, tag: 'small' }), ...generateCorpus(1, { seed: 10, tag: 'huge', mix: { plain: 0, alternative: 0, attachment: 0, charset: 0, malformed: 0, 'no-message-id': 0, huge: 1 }, hugeBytes: 25 * 1024 * 1024 })];
    stack.dovecot.seed(stack.user, 'Huge', huge.map((m) => m.raw));
    const withHuge = await runProducer(stack, 'Huge', 'huge', huge.length);

    const unit = 'emails/s';
    return [
      measure({ name: 'producer_backfill_vs_sequential_loop', value: ours.perSecond, unit, baseline: { name: 'sequential fetch/simpleParser/XADD loop', value: sequential }, target: { kind: 'ratio-at-least', ratio: 1.6 } }),
      measure({ name: 'producer_backfill_vs_parse_ceiling', value: ours.perSecond / threads, unit: `${unit} per parse thread (${threads})`, baseline: { name: 'mailparser alone, one core', value: ceiling }, target: { kind: 'ratio-at-least', ratio: 0.8 } }),
      measure({ name: 'producer_redis_memory_per_1000_entries', value: (ours.redisBytes / emails) * 1000 / (1024 * 1024), unit: 'MB' }),
      measure({ name: 'producer_backfill_file_store_vs_none', value: withStore.perSecond, unit, baseline: { name: 'the same backfill without a blob store', value: ours.perSecond }, target: { kind: 'ratio-at-least', ratio: 0.8 } }),
      ...(runs.onTmpfs.length > 0 ? [measure({ name: 'producer_backfill_file_store_tmpfs_vs_none', value: best(runs.onTmpfs).perSecond, unit, baseline: { name: 'the same backfill without a blob store', value: ours.perSecond } })] : []),
      measure({ name: 'producer_redis_bytes_per_entry', value: withStore.medianEntryBytes, unit: 'bytes', baseline: { name: 'median without a blob store', value: ours.medianEntryBytes }, target: { kind: 'at-most', value: 4096 } }),
      measure({ name: 'producer_redis_memory_per_1000_entries_file_store', value: (withStore.redisBytes / emails) * 1000 / (1024 * 1024), unit: 'MB' }),
      measure({ name: 'producer_peak_rss_backfill', value: Math.max(...runs.ours.map((r) => r.memory.peakRssMb)), unit: 'MB' }),
      measure({ name: 'producer_peak_rss_25mb_attachment', value: withHuge.memory.peakRssMb, unit: 'MB', target: { kind: 'below', value: 300 } }),
    ];
  } finally {
    await stack.stop();
  }
}
