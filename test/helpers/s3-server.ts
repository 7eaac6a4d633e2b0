// An S3 API server for tests: s3rver in this process, on a free loopback port, storing objects in
// a private directory. `stop()` closes it (connections included, as an outage would) and `start()`
// brings it back on the same port and directory, with the objects it held.
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.ts';

interface S3rverInstance {
  run(): Promise<{ port: number }>;
  close(): Promise<void>;
  httpServer?: Server;
}
type S3rverClass = new (options: Record<string, unknown>) => S3rverInstance;

// s3rver ships no types; this is the part of its API the tests use.
const S3rver = createRequire(import.meta.url)('s3rver') as S3rverClass;

export const S3_BUCKET = 'mail';
/** s3rver accepts these (and only these) credentials. */
export const S3_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface S3Server {
  endpoint: string;
  port: number;
  bucket: string;
  directory: string;
  running(): boolean;
  /** BLOB_STORE_URL and S3_* settings (with the credentials through the AWS chain's variables). */
  env(prefix?: string): Record<string, string>;
  stop(): Promise<void>;
  start(): Promise<void>;
  destroy(): Promise<void>;
}

export async function startS3Server(): Promise<S3Server> {
  const directory = mkdtempSync(join(tmpdir(), 'ms-s3-'));
  const port = await freePort();
  let server: S3rverInstance | undefined;

  const start = async () => {
    const next = new S3rver({ port, address: '127.0.0.1', silent: true, directory, configureBuckets: [{ name: S3_BUCKET }] });
    await next.run();
    server = next;
  };
  const stop = async () => {
    const current = server;
    server = undefined;
    if (!current) return;
    const closing = current.close();
    // Kept-alive client connections would hold close() open: an outage drops them too.
    current.httpServer?.closeAllConnections();
    await closing;
  };
  await start();
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    port,
    bucket: S3_BUCKET,
    directory,
    running: () => server !== undefined,
    env: (prefix = 'blobs') => ({
      BLOB_STORE_URL: `s3://${S3_BUCKET}/${prefix}`,
      S3_ENDPOINT: endpoint,
      S3_REGION: 'us-east-1',
      S3_FORCE_PATH_STYLE: 'true',
      AWS_ACCESS_KEY_ID: S3_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: S3_CREDENTIALS.secretAccessKey,
    }),
    stop,
    start,
    async destroy() {
      await stop();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
