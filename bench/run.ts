// `npm run bench`: one run on this machine, every measurement beside its baseline from the same
// run on the same messages. Prints a table and writes bench/results/<timestamp>.json and
// bench/results/latest.json. `--quick` uses small numbers (for a smoke test of the bench itself);
// `--only worker,sink,producer,latency,scale` runs some sections; `--results-dir DIR` writes elsewhere;
// `--blob-dir DIR` puts the producer's file blob store on that filesystem (the disk you will use);
// `--steady-seconds N` sets how long the scale section's one busy mailbox runs (10 minutes in full).
import { availableParallelism, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { benchLatency } from './latency.ts';
import { benchProducer } from './producer-backfill.ts';
import { formatTable, writeResults, type BenchResult } from './results.ts';
import { benchScale } from './scale.ts';
import { benchSinks } from './sink-throughput.ts';
import { benchWorker } from './worker-throughput.ts';

const SIZES = {
  full: {
    workerEntries: 50_000, workerProcesses: [2, 4], sinkEmails: 20_000, sinkRounds: 2, producerEmails: 10_000, latencyEmails: 200, latencyRate: 10,
    scale: { mailboxes: [10, 100, 1000], idleCpuSeconds: 60, backlog: 50_000, quietEveryMs: 1000, steadySeconds: 600, steadyPerSecond: 20, takeoverMailboxes: 1000 },
  },
  quick: {
    workerEntries: 300, workerProcesses: [2], sinkEmails: 300, sinkRounds: 1, producerEmails: 300, latencyEmails: 6, latencyRate: 10,
    scale: { mailboxes: [10, 30], idleCpuSeconds: 3, backlog: 1000, quietEveryMs: 250, steadySeconds: 20, steadyPerSecond: 20, takeoverMailboxes: 30, leaseTtlMs: 3000 },
  },
};
const SECTIONS = ['worker', 'sink', 'producer', 'latency', 'scale'] as const;
type Section = (typeof SECTIONS)[number];

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { quick: { type: 'boolean' }, only: { type: 'string' }, 'results-dir': { type: 'string' }, 'blob-dir': { type: 'string' }, 'steady-seconds': { type: 'string' } },
  });
  const size = values.quick ? SIZES.quick : SIZES.full;
  const only = (values.only?.split(',').map((s) => s.trim()) ?? [...SECTIONS]) as Section[];
  const unknown = only.filter((s) => !SECTIONS.includes(s));
  if (unknown.length > 0) throw new Error(`unknown section ${unknown.join(', ')} (expected ${SECTIONS.join(', ')})`);
  const dir = values['results-dir'] ?? fileURLToPath(new URL('./results/', import.meta.url));
  const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);

  // Every figure is relative to this machine at this moment: say how busy it was.
  const load = () => loadavg()[0]!.toFixed(1);
  log(`${availableParallelism()} cores, load average ${load()} at start`);
  const results: BenchResult[] = [];
  if (only.includes('worker')) results.push(...await benchWorker({ entries: size.workerEntries, scaling: size.workerProcesses, log }));
  if (only.includes('sink')) results.push(...await benchSinks({ webhookEmails: size.sinkEmails, postgresEmails: size.sinkEmails, rounds: size.sinkRounds, log }));
  if (only.includes('producer')) results.push(...await benchProducer({ emails: size.producerEmails, log, blobDir: values['blob-dir'] }));
  if (only.includes('latency')) results.push(...await benchLatency({ emails: size.latencyEmails, perSecond: size.latencyRate, log }));
  if (only.includes('scale')) {
    const steadySeconds = values['steady-seconds'] === undefined ? size.scale.steadySeconds : Number(values['steady-seconds']);
    if (!(steadySeconds > 0)) throw new Error(`--steady-seconds expects a number of seconds, got ${values['steady-seconds']}`);
    results.push(...await benchScale({ ...size.scale, steadySeconds, log }));
  }

  process.stdout.write(formatTable(results));
  const path = writeResults(dir, results);
  const missed = results.filter((r) => r.met === false).map((r) => r.name);
  process.stdout.write(`\nload average ${load()} at the end (${availableParallelism()} cores); on a busy machine, run it again\n`);
  process.stdout.write(`written: ${path}\n${missed.length ? `targets missed: ${missed.join(', ')}` : 'every target met'}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
