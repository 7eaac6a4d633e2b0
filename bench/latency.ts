// End-to-end latency: emails APPENDed to Dovecot at a steady rate, timed from the moment the
// APPEND completed (the mail is in the mailbox) to the moment its line appears in the worker's
// JSONL sink. Once with IDLE (the producer is told of new mail), once polling every second.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ImapFlow } from 'imapflow';
import { tailJsonl } from '../src/ops/jsonl-tail.ts';
import { summarize } from '../src/ops/percentiles.ts';
import { generateCorpus } from '../src/ops/local/sample-mail.ts';
import { spawnDaemon, startLocalStack, waitUntilReady, type DaemonProcess, type LocalStack } from '../src/ops/local/stack.ts';
import { measure, type BenchResult } from './results.ts';

export interface LatencyBenchOptions { emails: number; perSecond: number; log(line: string): void }

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const POLL_MS = 1000;
/** Bound on waiting for the last emails of a run (a stuck pipeline must not hang the bench). */
const SETTLE_MS = 60_000;

/** Appends at a steady rate and returns append-to-sink seconds, one per email seen. */
async function steadyRun(stack: LocalStack, sinkFile: string, options: LatencyBenchOptions, tag: string): Promise<number[]> {
  const mails = generateCorpus(options.emails, { seed: 11, tag, mix: { malformed: 0, 'no-message-id': 0 } });
  const appendedAt = new Map<string, number>();
  /** Lines that reached the sink before our APPEND returned (IDLE can be that quick): latency 0. */
  const early = new Set<string>();
  const latencies: number[] = [];
  const tail = tailJsonl(sinkFile, {
    intervalMs: 5,
    onLine(line, seenAt) {
      const id = String(line.messageId);
      const sent = appendedAt.get(id);
      if (sent !== undefined) { latencies.push(Math.max(0, seenAt - sent) / 1000); appendedAt.delete(id); }
      else early.add(id);
    },
  });
  const imap = new ImapFlow({
    host: '127.0.0.1', port: stack.dovecot.tlsPort, secure: true, logger: false,
    tls: { ca: readFileSync(stack.dovecot.caFile), servername: 'localhost' },
    auth: { user: stack.user, pass: stack.producerEnv().IMAP_PASSWORD! },
  });
  await imap.connect();
  try {
    const gap = 1000 / options.perSecond;
    const started = Date.now();
    for (const [i, mail] of mails.entries()) {
      await sleep(Math.max(0, started + i * gap - Date.now()));
      await imap.append('INBOX', mail.raw);
      if (early.delete(mail.messageId!)) latencies.push(0);
      else appendedAt.set(mail.messageId!, Date.now());
    }
    const deadline = Date.now() + SETTLE_MS;
    while (latencies.length < mails.length && Date.now() < deadline) await sleep(20);
    return latencies;
  } finally {
    tail.close();
    await imap.logout().catch(() => imap.close());
  }
}

export async function benchLatency(options: LatencyBenchOptions): Promise<BenchResult[]> {
  const { log } = options;
  const dir = mkdtempSync(join(tmpdir(), 'ms-bench-latency-'));
  const sinkFile = join(dir, 'sink.jsonl');
  const stack = await startLocalStack();
  const daemons: DaemonProcess[] = [];
  try {
    const worker = await spawnDaemon('worker', { env: stack.workerEnv(pathToFileURL(sinkFile).href, { LOG_LEVEL: 'warn' }) });
    daemons.push(worker);
    const results: BenchResult[] = [];
    for (const mode of ['idle', 'poll'] as const) {
      const producerEnv: Record<string, string> = mode === 'idle' ? { IMAP_IDLE: 'true' } : { IMAP_IDLE: 'false', POLL_INTERVAL_MS: String(POLL_MS) };
      const producer = await spawnDaemon('producer', { env: stack.producerEnv({ ...producerEnv, LOG_LEVEL: 'warn' }) });
      daemons.push(producer);
      await Promise.all([waitUntilReady(worker), waitUntilReady(producer)]);
      log(`latency: ${options.emails} emails at ${options.perSecond}/s, ${mode === 'idle' ? 'IDLE' : `polling every ${POLL_MS} ms`}`);
      const latencies = await steadyRun(stack, sinkFile, options, `latency-${mode}`);
      await producer.stop();
      daemons.pop();
      const s = summarize(latencies);
      const name = mode === 'idle' ? 'latency_idle' : 'latency_poll_1s';
      results.push(
        measure({ name: `${name}_p50`, value: s.p50, unit: 's' }),
        measure({ name: `${name}_p95`, value: s.p95, unit: 's', ...(mode === 'idle' ? { target: { kind: 'below' as const, value: 1 } } : {}) }),
        measure({ name: `${name}_p99`, value: s.p99, unit: 's' }),
        measure({ name: `${name}_delivered_share`, value: s.count / options.emails, unit: 'of sent' }),
      );
    }
    return results;
  } finally {
    for (const daemon of daemons.reverse()) await daemon.stop();
    await stack.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
