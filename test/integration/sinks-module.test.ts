// The module sink called directly with real handler files on disk, which import mailstream's
// errors as users do (`mailstream/sink`, through node_modules/mailstream -> this repository).
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, MailstreamError } from '../../src/core/errors.ts';
import { createModuleSink } from '../../src/worker/sinks/module.ts';
import type { Delivery, Sink } from '../../src/worker/sinks/types.ts';
import { ROOT } from '../helpers/cli.ts';
import { sampleEmail } from '../helpers/entries.ts';
import { killAllTracked, spawnTracked } from '../helpers/processes.ts';

const ACCOUNT = 'user@example.com';
let dir: string;
const open: Sink[] = [];

/** What handlers report back to the test: they run in this process. */
interface Probe { calls: unknown[]; inFlight: number; peak: number; events: string[] }
const probe = () => (globalThis as unknown as { probe: Probe }).probe;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ms-module-sink-'));
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(ROOT, join(dir, 'node_modules', 'mailstream'), 'dir');
});

beforeEach(() => {
  (globalThis as unknown as { probe: Probe }).probe = { calls: [], inFlight: 0, peak: 0, events: [] };
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  expect(await killAllTracked()).toBe(0);
});

let files = 0;
function handlerFile(source: string): string {
  const path = join(dir, `handler-${(files += 1)}.mjs`);
  writeFileSync(path, source);
  return `module://${path}`;
}

async function sink(source: string, concurrency = 4): Promise<Sink> {
  const created = await createModuleSink(handlerFile(source), { concurrency });
  open.push(created);
  return created;
}

function delivery(n: number, previousAttempts = 0): Delivery {
  const email = sampleEmail(ACCOUNT, n);
  return { id: `${1_700_000_000_000 + n}-0`, key: email.key, email: JSON.stringify(email), account: ACCOUNT, previousAttempts };
}

const live = () => new AbortController().signal;

describe('handle(email, ctx)', () => {
  it('gives each email the outcome of its own call: returned, thrown permanent, thrown transient, thrown anything', async () => {
    const s = await sink(`
import { PermanentDeliveryError, TransientDeliveryError } from 'mailstream/sink';
export async function handle(email, ctx) {
  globalThis.probe.calls.push({ uid: email.uid, subject: email.envelope.subject, key: ctx.idempotencyKey, entryId: ctx.entryId, account: ctx.account, attempt: ctx.attempt, signal: ctx.signal instanceof AbortSignal });
  if (email.uid === 1) throw new PermanentDeliveryError('no route for this sender');
  if (email.uid === 2) throw new TransientDeliveryError('database is down', { kind: 'sink-unavailable', retryAfterMs: 1500 });
  if (email.uid === 3) throw new Error('lock timeout');
  if (email.uid === 4) throw Object.assign(new Error('refused by policy'), { permanent: true });
}
`);
    const outcomes = await s.deliver([delivery(0), delivery(1), delivery(2), delivery(3, 2), delivery(4)], live());
    expect(outcomes).toEqual([
      { status: 'delivered' },
      { status: 'permanent', reason: 'no route for this sender' },
      { status: 'retry', kind: 'sink-unavailable', retryAfterMs: 1500, reason: 'database is down' },
      { status: 'retry', kind: 'sink-failed', reason: 'lock timeout' },
      { status: 'permanent', reason: 'refused by policy' },
    ]);
    expect(probe().calls).toContainEqual({ uid: 3, subject: 'Message 3', key: '<msg-3@example.com>', entryId: delivery(3).id, account: ACCOUNT, attempt: 3, signal: true });
  });

  it('runs at most `concurrency` calls at once across concurrent deliveries', async () => {
    const s = await sink(`
export async function handle() {
  const p = globalThis.probe;
  p.inFlight += 1;
  p.peak = Math.max(p.peak, p.inFlight);
  await new Promise((r) => setTimeout(r, 5));
  p.inFlight -= 1;
}
`, 3);
    const batches = [0, 1].map((loop) => Array.from({ length: 12 }, (_, i) => delivery(loop * 100 + i)));
    const outcomes = await Promise.all(batches.map((b) => s.deliver(b, live())));
    expect(outcomes.flat().every((o) => o.status === 'delivered')).toBe(true);
    expect(probe().peak).toBe(3);
  });

  it('refuses an entry whose email is not JSON without calling the handler', async () => {
    const s = await sink('export function handle() { globalThis.probe.calls.push(1); }');
    const outcomes = await s.deliver([{ ...delivery(0), email: '{not json' }, delivery(1)], live());
    expect(outcomes).toEqual([{ status: 'permanent', reason: 'the stream entry\'s email is not valid JSON' }, { status: 'delivered' }]);
    expect(probe().calls).toHaveLength(1);
  });
});

describe('handleBatch(emails, ctx)', () => {
  it('gets the batch and its deliveries, and answers one outcome per email', async () => {
    const s = await sink(`
export async function handleBatch(emails, ctx) {
  globalThis.probe.calls.push({ uids: emails.map((e) => e.uid), account: ctx.account, deliveries: ctx.deliveries, signal: ctx.signal instanceof AbortSignal });
  return emails.map((e) => e.uid % 2 === 0 ? { status: 'delivered' } : { status: 'retry', reason: 'odd', kind: 'sink-rate-limited', retryAfterMs: 10 });
}
export function handle() { throw new Error('handle is not called when handleBatch exists'); }
`);
    const outcomes = await s.deliver([delivery(0), delivery(1, 1), { ...delivery(2), email: 'nope' }, delivery(4)], live());
    expect(outcomes).toEqual([
      { status: 'delivered' },
      { status: 'retry', reason: 'odd', kind: 'sink-rate-limited', retryAfterMs: 10 },
      { status: 'permanent', reason: 'the stream entry\'s email is not valid JSON' },
      { status: 'delivered' },
    ]);
    expect(probe().calls).toEqual([{
      uids: [0, 1, 4], account: ACCOUNT, signal: true,
      deliveries: [
        { idempotencyKey: '<msg-0@example.com>', entryId: delivery(0).id, type: 'message.new', attempt: 1 },
        { idempotencyKey: '<msg-1@example.com>', entryId: delivery(1).id, type: 'message.new', attempt: 2 },
        { idempotencyKey: '<msg-4@example.com>', entryId: delivery(4).id, type: 'message.new', attempt: 1 },
      ],
    }]);
  });

  it('a throw is the outcome of every email of the batch; a wrong answer retries them', async () => {
    const thrower = await sink(`
import { PermanentDeliveryError } from 'mailstream/sink';
export async function handleBatch(emails) { if (emails.length > 1) throw new PermanentDeliveryError('batch refused'); throw new Error('flaky'); }
`);
    expect(await thrower.deliver([delivery(0), delivery(1)], live())).toEqual([0, 1].map(() => ({ status: 'permanent', reason: 'batch refused' })));
    expect(await thrower.deliver([delivery(0)], live())).toEqual([{ status: 'retry', kind: 'sink-failed', reason: 'flaky' }]);
    const short = await sink('export async function handleBatch() { return [{ status: \'delivered\' }]; }');
    const outcomes = await short.deliver([delivery(0), delivery(1)], live());
    expect(outcomes.every((o) => o.status === 'retry' && o.reason.includes('1 outcomes for 2 emails'))).toBe(true);
  });
});

describe('init(ctx) and close()', () => {
  it('calls init once before any delivery and close once at the end, aborting init\'s signal', async () => {
    const url = handlerFile(`
let signal;
export async function init(ctx) { signal = ctx.signal; globalThis.probe.events.push('init:' + Object.keys(ctx).join(',') + ':' + ctx.signal.aborted); }
export async function handle() { globalThis.probe.events.push('handle'); }
export async function close() { globalThis.probe.events.push('close:' + signal.aborted); }
`);
    const s = await createModuleSink(url, { concurrency: 2 });
    expect(probe().events).toEqual(['init:signal:false']);
    await s.deliver([delivery(0)], live());
    await Promise.all([s.close(), s.close()]);
    await s.close();
    expect(probe().events).toEqual(['init:signal:false', 'handle', 'close:true']);
  });

  it('an init that throws stops start-up with its message (not a configuration error: a restart may fix it)', async () => {
    const url = handlerFile('export function init() { throw new Error(\'cannot reach the CRM\'); }\nexport function handle() {}\n');
    const err = await createModuleSink(url, { concurrency: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MailstreamError);
    expect(err).not.toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/^SINK_URL: init\(\) of module .*handler-\d+\.mjs failed: cannot reach the CRM$/);
  });
});

describe('a module that cannot serve', () => {
  it('stops start-up with a ConfigError naming SINK_URL and what is wrong', async () => {
    const cases: Array<[string, RegExp]> = [
      ['export const nothing = 1;', /exports neither handle\(email, ctx\) nor handleBatch\(emails, ctx\) \(its exports: nothing\)/],
      ['export function handle() {}\nexport const init = 5;', /`init` is exported but is number, not a function/],
      ['export function handleBatch() {}\nexport const close = {};', /`close` is exported but is object, not a function/],
      ['export function handle( {', /cannot load module .*handler-\d+\.mjs: /],
    ];
    for (const [source, problem] of cases) {
      const err = await createModuleSink(handlerFile(source), { concurrency: 1 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).setting).toBe('SINK_URL');
      expect((err as Error).message).toMatch(problem);
    }
    const missing = await createModuleSink(`module://${join(dir, 'no-such-handler.mjs')}`, { concurrency: 1 }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(ConfigError);
  });
});

describe('mailstream/sink', () => {
  /** Runs a snippet in a plain Node process (Node's own resolver and type stripping, no Vite). */
  async function importIn(cwd: string): Promise<string> {
    const child = spawnTracked(process.execPath, ['--input-type=module', '-e',
      "const m = await import('mailstream/sink'); const e = new m.TransientDeliveryError('x', { kind: 'sink-timeout' }); console.log(Object.keys(m).sort().join(',') + ' ' + e.kind + ' ' + new m.PermanentDeliveryError('y').permanent);"], { cwd });
    expect(await child.exited, child.output()).toBe(0);
    return child.output().trim();
  }

  it('resolves through a node_modules symlink to the repository (as `npm install /path/to/mailstream` makes)', async () => {
    expect(await importIn(dir)).toBe('BlobNotFoundError,BlobStoreUnavailableError,PermanentDeliveryError,TransientDeliveryError sink-timeout true');
  });

  it('resolves inside the repository itself (self-reference)', async () => {
    expect(await importIn(ROOT)).toBe('BlobNotFoundError,BlobStoreUnavailableError,PermanentDeliveryError,TransientDeliveryError sink-timeout true');
  });
});
