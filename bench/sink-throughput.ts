// Sink throughput: each sink called as the worker calls it (one batch of READ_BATCH_SIZE emails
// at a time, WORKER_CONCURRENCY in flight) beside what a user would write by hand for the same
// target, on the same 4 KB emails in the same run:
// - webhook: a plain fetch loop keeping the same number of POSTs in flight, no batches, against
//   the same keep-alive receiver (a separate process, so it does not share our core);
// - PostgreSQL: a plain multi-row INSERT ... VALUES per batch (fields pulled out of the JSON in
//   JavaScript) into a table of the same shape (LIKE emails INCLUDING ALL), on one connection.
// PostgreSQL is the machine's (MAILSTREAM_BENCH_POSTGRES_URL, default the local server on 5432):
// a database is created for the run and dropped after; without a server the section is skipped.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { spawnChild, stopChild } from '../src/ops/local/child-process.ts';
import { createPostgresSink } from '../src/worker/sinks/postgres.ts';
import type { Delivery, Sink } from '../src/worker/sinks/types.ts';
import { createWebhookSink } from '../src/worker/sinks/webhook.ts';
import { emailJson } from './payloads.ts';
import { measure, type BenchResult } from './results.ts';

const ACCOUNT = 'sink@bench.mailstream.test';
/** The worker's defaults: READ_BATCH_SIZE and WORKER_CONCURRENCY. */
const BATCH = 100;
const CONCURRENCY = 16;
const RATIO_TARGET = 0.7;

export interface SinkBenchOptions {
  webhookEmails: number;
  postgresEmails: number;
  /** Each side is measured this many times, alternating; the best run counts. */
  rounds: number;
  log(line: string): void;
}

/** Emails with keys from `from` on, never repeated within a run. */
function deliveries(from: number, count: number): Delivery[] {
  return Array.from({ length: count }, (_, i) => {
    const n = from + i;
    return { id: `${n + 1}-0`, key: `bench-${n}@bench.mailstream.test`, email: emailJson(n, ACCOUNT), account: ACCOUNT, previousAttempts: 0 };
  });
}

function batches<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += BATCH) out.push(items.slice(i, i + BATCH));
  return out;
}

async function perSecond(count: number, run: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await run();
  return count / ((performance.now() - started) / 1000);
}

/** Runs every batch through the sink, one call after another, as one account's loop does. */
async function throughSink(sink: Sink, emails: readonly Delivery[]): Promise<void> {
  const signal = new AbortController().signal;
  for (const batch of batches(emails)) {
    const outcomes = await sink.deliver(batch, signal);
    const failed = outcomes.find((o) => o.status !== 'delivered');
    if (failed) throw new Error(`the ${sink.kind} sink did not deliver: ${JSON.stringify(failed)}`);
  }
}

// A receiver that answers 200 as soon as the body is in; keep-alive for the whole run.
const RECEIVER = `
const server = require('node:http').createServer((req, res) => {
  req.resume();
  req.on('end', () => { res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' }); res.end('ok'); });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`;

async function startReceiver(): Promise<{ url: string; stop: () => Promise<unknown> }> {
  const handle = spawnChild(process.execPath, ['-e', RECEIVER]);
  for (;;) {
    const port = /listening (\d+)/.exec(handle.output())?.[1];
    if (port) return { url: `http://127.0.0.1:${port}/hook`, stop: () => stopChild(handle) };
    if (handle.child.exitCode !== null) throw new Error(`the bench's webhook receiver exited: ${handle.output()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** What one would write without mailstream: CONCURRENCY loops of fetch over the same emails. */
async function fetchLoop(url: string, emails: readonly Delivery[]): Promise<void> {
  let next = 0;
  const loop = async () => {
    for (let i = next++; i < emails.length; i = next++) {
      const d = emails[i]!;
      const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': d.key }, body: d.email });
      await response.arrayBuffer();
      if (!response.ok) throw new Error(`the receiver answered ${response.status}`);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, loop));
}

async function benchWebhook(options: SinkBenchOptions): Promise<BenchResult> {
  const { webhookEmails: count, rounds, log } = options;
  const receiver = await startReceiver();
  try {
    const sink = createWebhookSink({ url: receiver.url, secret: undefined, timeoutMs: 10_000, concurrency: CONCURRENCY });
    let offset = 0;
    const take = (n: number) => { const out = deliveries(offset, n); offset += n; return out; };
    // Connections open and code warm on both sides before any clock starts.
    await throughSink(sink, take(BATCH));
    await fetchLoop(receiver.url, take(BATCH));
    let viaSink = 0;
    let viaFetch = 0;
    for (let round = 0; round < rounds; round++) {
      log(`sink: webhook sink, ${count} emails in batches of ${BATCH}, ${CONCURRENCY} in flight`);
      const forSink = take(count);
      viaSink = Math.max(viaSink, await perSecond(count, () => throughSink(sink, forSink)));
      log(`sink: plain fetch loop, ${CONCURRENCY} in flight`);
      const forFetch = take(count);
      viaFetch = Math.max(viaFetch, await perSecond(count, () => fetchLoop(receiver.url, forFetch)));
    }
    await sink.close();
    return measure({
      name: 'worker_webhook_sink_vs_fetch_loop', value: viaSink, unit: 'emails/s',
      baseline: { name: `keep-alive fetch loop (${CONCURRENCY} in flight)`, value: viaFetch }, target: { kind: 'ratio-at-least', ratio: RATIO_TARGET },
    });
  } finally {
    await receiver.stop();
  }
}

const COLUMNS = ['idempotency_key', 'account', 'mailbox', 'uid_validity', 'uid', 'message_id', 'from_address', 'to_addresses', 'subject',
  'sent_at', 'internal_date', 'size_bytes', 'attachment_count', 'ingested_at', 'stream_entry_id', 'email'];

interface ParsedEmail {
  account: string; mailbox: string; uidValidity: string; uid: number; messageId: string | null; internalDate: string; size: number; ingestedAt: string;
  envelope: { subject: string | null; date: string | null; from: Array<{ address: string }>; to: Array<{ address: string }> };
  attachments: unknown[];
}

/** What one would write without mailstream: one INSERT ... VALUES per batch, fields taken out in JS. */
async function insertLoop(client: pg.Client, emails: readonly Delivery[]): Promise<void> {
  for (const batch of batches(emails)) {
    const params: unknown[] = [];
    const rows = batch.map((d) => {
      const e = JSON.parse(d.email) as ParsedEmail;
      params.push(d.key, e.account, e.mailbox, e.uidValidity, e.uid, e.messageId, e.envelope.from[0]?.address ?? null, e.envelope.to.map((a) => a.address),
        e.envelope.subject, e.envelope.date, e.internalDate, e.size, e.attachments.length, e.ingestedAt, d.id, d.email);
      const base = params.length - COLUMNS.length;
      return `(${COLUMNS.map((_, i) => `$${base + i + 1}`).join(', ')})`;
    });
    await client.query(`INSERT INTO emails_baseline (${COLUMNS.join(', ')}) VALUES ${rows.join(', ')} ON CONFLICT (account, idempotency_key) DO NOTHING`, params);
  }
}

async function benchPostgres(options: SinkBenchOptions): Promise<BenchResult | undefined> {
  const { postgresEmails: count, rounds, log } = options;
  const serverUrl = process.env.MAILSTREAM_BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const admin = new pg.Client({ connectionString: serverUrl, connectionTimeoutMillis: 3_000 });
  try {
    await admin.connect();
  } catch (err) {
    log(`sink: no PostgreSQL at ${new URL(serverUrl).host} (${(err as Error).message}): PostgreSQL sink skipped`);
    return undefined;
  }
  const database = `mailstream_bench_${randomBytes(4).toString('hex')}`;
  await admin.query(`CREATE DATABASE ${database}`);
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  const sink = createPostgresSink(url.href);
  const client = new pg.Client({ connectionString: url.href });
  try {
    await client.connect();
    let offset = 0;
    const take = (n: number) => { const out = deliveries(offset, n); offset += n; return out; };
    // The sink's first batch runs its migrations; the baseline's table copies the result.
    await throughSink(sink, take(BATCH));
    await client.query('CREATE TABLE emails_baseline (LIKE emails INCLUDING ALL)');
    await insertLoop(client, take(BATCH));
    let viaSink = 0;
    let viaInsert = 0;
    for (let round = 0; round < rounds; round++) {
      log(`sink: PostgreSQL sink, ${count} emails in batches of ${BATCH}`);
      const forSink = take(count);
      viaSink = Math.max(viaSink, await perSecond(count, () => throughSink(sink, forSink)));
      log('sink: plain multi-row INSERT loop');
      const forInsert = take(count);
      viaInsert = Math.max(viaInsert, await perSecond(count, () => insertLoop(client, forInsert)));
    }
    return measure({
      name: 'worker_postgres_sink_vs_insert_loop', value: viaSink, unit: 'emails/s',
      baseline: { name: `INSERT ... VALUES loop (${BATCH} rows a statement)`, value: viaInsert }, target: { kind: 'ratio-at-least', ratio: RATIO_TARGET },
    });
  } finally {
    await client.end().catch(() => undefined);
    await sink.close();
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin.end();
  }
}

export async function benchSinks(options: SinkBenchOptions): Promise<BenchResult[]> {
  const results = [await benchWebhook(options)];
  const postgres = await benchPostgres(options);
  if (postgres) results.push(postgres);
  return results;
}
