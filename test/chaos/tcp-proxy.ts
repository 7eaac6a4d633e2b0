// A TCP proxy the chaos suite puts between the worker and PostgreSQL, so it can cut the sink off
// (refuse new connections and drop the open ones) and restore it on the same port.
import { createServer, Socket, type Server } from 'node:net';
import { freePort } from '../helpers/ports.ts';

export interface TcpProxy {
  port: number;
  cut(): Promise<void>;
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function startTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  const port = await freePort();
  const sockets = new Set<Socket>();
  let server: Server | undefined;

  const listen = () => new Promise<void>((resolve, reject) => {
    const s = createServer((client) => {
      const upstream = new Socket();
      for (const socket of [client, upstream]) {
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
        socket.on('error', () => { client.destroy(); upstream.destroy(); });
      }
      upstream.connect(targetPort, targetHost, () => { client.pipe(upstream); upstream.pipe(client); });
    });
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => { server = s; resolve(); });
  });

  const cut = async () => {
    const s = server;
    server = undefined;
    for (const socket of sockets) socket.destroy();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  };

  await listen();
  return { port, cut, restore: listen, close: cut };
}
