// A local HTTP receiver standing in for a customer's webhook. It records every request (key,
// body, headers, time) and answers as the test's `respond` decides; it can go down (connection
// refused) and come back on the same port.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ReceivedRequest {
  key: string;
  body: string;
  headers: IncomingMessage['headers'];
  at: number;
  /** 1 for the first request with this key, 2 for the second ... */
  attempt: number;
}

export interface Reply { status?: number; headers?: Record<string, string>; body?: string; delayMs?: number }

export interface WebhookReceiver {
  url: string;
  port: number;
  requests: ReceivedRequest[];
  /** Keys answered with a 2xx, each as often as it was accepted. */
  accepted: string[];
  respond: (req: ReceivedRequest) => Reply;
  attemptsOf(key: string): ReceivedRequest[];
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
}

export async function startWebhookReceiver(respond: (req: ReceivedRequest) => Reply = () => ({ status: 200 })): Promise<WebhookReceiver> {
  const counts = new Map<string, number>();
  let server: Server | undefined;
  let port = 0;
  const delayed = new Set<NodeJS.Timeout>();
  const receiver: WebhookReceiver = {
    url: '',
    port: 0,
    requests: [],
    accepted: [],
    respond,
    attemptsOf: (key) => receiver.requests.filter((r) => r.key === key),
    async up() {
      server = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const key = String(req.headers['idempotency-key'] ?? '');
          const attempt = (counts.get(key) ?? 0) + 1;
          counts.set(key, attempt);
          const received: ReceivedRequest = { key, body: Buffer.concat(chunks).toString('utf8'), headers: req.headers, at: Date.now(), attempt };
          receiver.requests.push(received);
          const reply = receiver.respond(received);
          const send = () => {
            const status = reply.status ?? 200;
            if (status >= 200 && status < 300) receiver.accepted.push(key);
            res.writeHead(status, { 'content-type': 'text/plain', ...reply.headers });
            res.end(reply.body ?? '');
          };
          if (!reply.delayMs) return send();
          const timer = setTimeout(() => { delayed.delete(timer); send(); }, reply.delayMs);
          delayed.add(timer);
        });
      });
      await new Promise<void>((resolve) => server!.listen(port, '127.0.0.1', resolve));
      port = (server.address() as AddressInfo).port;
      receiver.port = port;
      receiver.url = `http://127.0.0.1:${port}/hook`;
    },
    async down() {
      const s = server;
      server = undefined;
      for (const timer of delayed) clearTimeout(timer);
      delayed.clear();
      if (!s) return;
      await new Promise<void>((resolve) => { s.close(() => resolve()); s.closeAllConnections(); });
    },
    close: () => receiver.down(),
  };
  await receiver.up();
  return receiver;
}
