// The health and metrics listener each daemon runs: /health (alive), /ready (dependencies
// answer, no breaker open), /status (JSON) and /metrics (Prometheus text).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MailstreamError } from './errors.ts';
import type { Logger } from './logger.ts';
import type { Metrics } from './metrics.ts';

export interface ReadyReport { ready: boolean; reasons: string[] }

export interface HttpServerOptions {
  host: string;
  port: number;
  metrics: Metrics;
  logger: Logger;
  /** Checks dependencies; should answer within a second or two even when they are down. */
  ready: () => Promise<ReadyReport>;
  status: () => Promise<unknown>;
}

export interface HttpServerHandle {
  server: Server;
  /** The port actually bound (HTTP_PORT=0 picks one). */
  port: number;
  url: string;
  close(): Promise<void>;
}

export async function startHttpServer(options: HttpServerOptions): Promise<HttpServerHandle> {
  const { metrics, logger } = options;
  const checkReady = async (): Promise<ReadyReport> => {
    const report = await options.ready();
    metrics.ready.set(report.ready ? 1 : 0);
    return report;
  };
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (status: number, body: string, type = 'application/json') => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, JSON.stringify({ error: 'method not allowed' }));
    const handle = async () => {
      switch (path) {
        case '/health':
          return send(200, JSON.stringify({ status: 'ok', pid: process.pid, uptimeSeconds: Math.round(process.uptime()) }));
        case '/ready': {
          const report = await checkReady();
          return send(report.ready ? 200 : 503, JSON.stringify({ status: report.ready ? 'ready' : 'not ready', reasons: report.reasons }));
        }
        case '/status':
          return send(200, JSON.stringify(await options.status(), null, 2));
        case '/metrics':
          // Prometheus may be the only caller: without this, mailstream_ready and
          // mailstream_redis_up would keep whatever the last /ready call (if any) left there.
          await checkReady();
          return send(200, await metrics.registry.metrics(), metrics.registry.contentType);
        default:
          return send(404, JSON.stringify({ error: 'not found', endpoints: ['/health', '/ready', '/status', '/metrics'] }));
      }
    };
    handle().catch((err: unknown) => {
      logger.error({ err, path }, 'http handler failed');
      if (!res.headersSent) send(500, JSON.stringify({ error: 'internal error' }));
    });
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    // A port in use is an operator's mistake to fix in the settings, not a crash to debug.
    const refused = (err: NodeJS.ErrnoException) => reject(new MailstreamError('ERR_HTTP_LISTEN',
      `cannot listen on ${options.host}:${options.port} (HTTP_HOST/HTTP_PORT): ${err.code === 'EADDRINUSE' ? 'the port is in use' : err.message}`, { cause: err }));
    server.once('error', refused);
    server.listen(options.port, options.host, () => { server.off('error', refused); resolve(); });
  });
  const port = (server.address() as AddressInfo).port;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  logger.info({ url: `http://${host}:${port}` }, 'health and metrics listening');
  return {
    server,
    port,
    url: `http://${host}:${port}`,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}
