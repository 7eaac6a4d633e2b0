// The webhook sink called directly against real local HTTP servers: one outcome per email from
// its own answer, at most `concurrency` requests in flight across calls, connections kept alive,
// headers and signature as documented, credentials never in a reason.
import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../helpers/ports.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.ts';
import { createWebhookSink } from '../../src/worker/sinks/webhook.ts';
import type { Delivery, Outcome } from '../../src/worker/sinks/types.ts';

const ACCOUNT = 'user@example.com';

function deliveries(count: number, from = 0, previousAttempts = 0): Delivery[] {
  return Array.from({ length: count }, (_, i) => {
    const n = from + i;
    return { id: `${1_700_000_000_000 + n}-0`, key: `<msg-${n}@example.com>`, email: JSON.stringify({ key: `<msg-${n}@example.com>`, n }), account: ACCOUNT, previousAttempts };
  });
}

const live = () => new AbortController().signal;

let receiver: WebhookReceiver;
beforeAll(async () => { receiver = await startWebhookReceiver(); });
afterAll(async () => { await receiver?.close(); });
afterEach(() => { receiver.requests.length = 0; receiver.accepted.length = 0; receiver.respond = () => ({ status: 200 }); });

describe('outcomes', () => {
  it('gives each email of a batch the outcome of its own answer', async () => {
    const statuses: Record<string, { status: number; headers?: Record<string, string>; body?: string }> = {
      '<msg-0@example.com>': { status: 200 },
      '<msg-1@example.com>': { status: 204 },
      '<msg-2@example.com>': { status: 500, body: 'boom' },
      '<msg-3@example.com>': { status: 408 },
      '<msg-4@example.com>': { status: 429, headers: { 'retry-after': '12' } },
      '<msg-5@example.com>': { status: 503, headers: { 'retry-after': '3' } },
      '<msg-6@example.com>': { status: 502 },
      '<msg-7@example.com>': { status: 422, body: `unknown tenant ${'x'.repeat(1_000)}` },
      '<msg-8@example.com>': { status: 201, body: 'y'.repeat(200_000) },
    };
    receiver.respond = (req) => statuses[req.key] ?? { status: 200 };
    const sink = createWebhookSink({ url: receiver.url, secret: undefined, timeoutMs: 5_000, concurrency: 4 });
    const outcomes = await sink.deliver(deliveries(9), live());
    const where = `http://127.0.0.1:${receiver.port}/hook`;
    expect(outcomes.slice(0, 2)).toEqual([{ status: 'delivered' }, { status: 'delivered' }]);
    expect(outcomes[2]).toEqual({ status: 'retry', kind: 'sink-failed', reason: `webhook ${where} answered 500: boom` });
    expect(outcomes[3]).toMatchObject({ status: 'retry', kind: 'sink-failed' });
    expect(outcomes[4]).toMatchObject({ status: 'retry', kind: 'sink-rate-limited', retryAfterMs: 12_000 });
    expect(outcomes[5]).toMatchObject({ status: 'retry', kind: 'sink-unavailable', retryAfterMs: 3_000 });
    expect(outcomes[6]).toMatchObject({ status: 'retry', kind: 'sink-unavailable' });
    expect(outcomes[6]).not.toHaveProperty('retryAfterMs');
    const refused = outcomes[7] as Outcome & { status: 'permanent' };
    expect(refused.status).toBe('permanent');
    expect(refused.reason).toMatch(new RegExp(`^webhook ${where} refused the email with 422: unknown tenant x+…$`));
    expect(refused.reason.length).toBeLessThan(500);
    expect(outcomes[8]).toEqual({ status: 'delivered' });
    await sink.close();
  });

  it('sends the documented headers and a signature over the timestamp and body', async () => {
    const sink = createWebhookSink({ url: receiver.url, secret: 'hook-secret', timeoutMs: 5_000, concurrency: 2 });
    const [d] = deliveries(1, 40, 2);
    expect(await sink.deliver([d!], live())).toEqual([{ status: 'delivered' }]);
    const [req] = receiver.requests;
    expect(req!.body).toBe(d!.email);
    expect(req!.headers).toMatchObject({
      'content-type': 'application/json', 'idempotency-key': d!.key, 'x-mailstream-entry-id': d!.id, 'x-mailstream-attempt': '3', 'x-mailstream-account': d!.account,
      // Entries before version 3 have no type: they are emails.
      'x-mailstream-event': 'message.new',
    });
    const [, t, v1] = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(String(req!.headers['x-mailstream-signature']))!;
    expect(v1).toBe(createHmac('sha256', 'hook-secret').update(`${t}.${d!.email}`).digest('hex'));
  });

  it('names what a change event is in X-Mailstream-Event', async () => {
    const sink = createWebhookSink({ url: receiver.url, secret: undefined, timeoutMs: 5_000, concurrency: 2 });
    const [d] = deliveries(1, 41);
    const event = { ...d!, key: '<msg-41@example.com>#deleted#INBOX:1:41', type: 'message.deleted' as const };
    expect(await sink.deliver([event], live())).toEqual([{ status: 'delivered' }]);
    expect(receiver.requests[0]!.headers).toMatchObject({ 'x-mailstream-event': 'message.deleted', 'idempotency-key': event.key });
  });

  it('sends URL credentials as Basic auth and never names them in a reason', async () => {
    const url = new URL(receiver.url);
    url.username = 'hook-user';
    url.password = 's3cr3t:pw';
    url.search = '?token=query-secret';
    receiver.respond = (req) => (req.key === '<msg-1@example.com>' ? { status: 500, body: 'nope' } : { status: 200 });
    const sink = createWebhookSink({ url: url.href, secret: undefined, timeoutMs: 5_000, concurrency: 2 });
    const outcomes = await sink.deliver(deliveries(2), live());
    expect(outcomes[0]).toEqual({ status: 'delivered' });
    expect(receiver.requests[0]!.headers.authorization).toBe(`Basic ${Buffer.from('hook-user:s3cr3t:pw').toString('base64')}`);
    expect(JSON.stringify(outcomes)).not.toMatch(/hook-user|s3cr3t|query-secret/);

    const down = new URL(`http://127.0.0.1:${await freePort()}/hook`);
    down.username = 'hook-user';
    down.password = 's3cr3t';
    const unreachable = await createWebhookSink({ url: down.href, secret: undefined, timeoutMs: 5_000, concurrency: 2 }).deliver(deliveries(1), live());
    expect(unreachable[0]).toMatchObject({ status: 'retry', kind: 'sink-unavailable' });
    expect(JSON.stringify(unreachable)).not.toMatch(/hook-user|s3cr3t/);
  });

  it('a refused connection is sink-unavailable for every email; no answer in time is sink-timeout', async () => {
    const port = await freePort();
    const refused = await createWebhookSink({ url: `http://127.0.0.1:${port}/hook`, secret: undefined, timeoutMs: 5_000, concurrency: 2 }).deliver(deliveries(3), live());
    expect(refused).toEqual(Array.from({ length: 3 }, () => ({ status: 'retry', kind: 'sink-unavailable', reason: `webhook http://127.0.0.1:${port}/hook unreachable: ECONNREFUSED` })));

    receiver.respond = (req) => (req.key === '<msg-0@example.com>' ? { status: 200, delayMs: 5_000 } : { status: 200 });
    const slow = await createWebhookSink({ url: receiver.url, secret: undefined, timeoutMs: 200, concurrency: 2 }).deliver(deliveries(2), live());
    expect(slow[0]).toEqual({ status: 'retry', kind: 'sink-timeout', reason: `webhook ${new URL(receiver.url).origin}/hook did not answer within 200 ms` });
    expect(slow[1]).toEqual({ status: 'delivered' });
  });

  it('a key that cannot be an HTTP header is permanent; the rest of the batch goes on', async () => {
    const sink = createWebhookSink({ url: receiver.url, secret: undefined, timeoutMs: 5_000, concurrency: 2 });
    const [good] = deliveries(1);
    const outcomes = await sink.deliver([{ ...good!, key: '<€@example.com>' }, good!], live());
    expect(outcomes[0]).toMatchObject({ status: 'permanent', reason: expect.stringContaining('cannot be sent as an HTTP header') });
    expect(outcomes[1]).toEqual({ status: 'delivered' });
  });

  it('the worker giving up aborts what is in flight and sends nothing more', async () => {
    receiver.respond = () => ({ status: 200, delayMs: 10_000 });
    const sink = createWebhookSink({ url: receiver.url, secret: undefined, timeoutMs: 30_000, concurrency: 1 });
    const giveUp = new AbortController();
    const call = sink.deliver(deliveries(3), giveUp.signal);
    while (receiver.requests.length === 0) await new Promise((r) => setTimeout(r, 10));
    giveUp.abort();
    const outcomes = await call;
    expect(outcomes.every((o) => o.status === 'retry')).toBe(true);
    expect(receiver.requests).toHaveLength(1);
  });
});

/** A receiver that counts requests in flight and TCP connections, answering after a short hold. */
async function countingServer(holdMs: number): Promise<{ url: string; peak: () => number; connections: () => number; requests: () => number; close: () => Promise<void> }> {
  let inFlight = 0;
  let peak = 0;
  let connections = 0;
  let requests = 0;
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    inFlight += 1;
    requests += 1;
    peak = Math.max(peak, inFlight);
    req.resume();
    req.on('end', () => setTimeout(() => { inFlight -= 1; res.writeHead(200, { 'content-type': 'text/plain' }); res.end('ok thanks'); }, holdMs));
  });
  server.on('connection', () => { connections += 1; });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    peak: () => peak,
    connections: () => connections,
    requests: () => requests,
    close: () => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }),
  };
}

describe('concurrency and connections', () => {
  it('keeps at most `concurrency` requests in flight across concurrent calls, and reuses its connections', async () => {
    const server = await countingServer(20);
    try {
      const sink = createWebhookSink({ url: server.url, secret: 'k', timeoutMs: 5_000, concurrency: 4 });
      // Two account loops handing over a batch each at the same moment.
      const [a, b] = await Promise.all([sink.deliver(deliveries(30), live()), sink.deliver(deliveries(30, 100), live())]);
      expect([...a!, ...b!].every((o) => o.status === 'delivered')).toBe(true);
      expect(server.peak()).toBe(4);
      // Then more batches: the same sockets carry them.
      for (let round = 0; round < 3; round++) await sink.deliver(deliveries(20, 200 + 20 * round), live());
      expect(server.requests()).toBe(120);
      expect(server.connections()).toBeLessThanOrEqual(4);
    } finally {
      await server.close();
    }
  });
});
