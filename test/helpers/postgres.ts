// A PostgreSQL database per test file: a fresh database on the machine's server at
// 127.0.0.1:5432 when one answers, else a private cluster (initdb + pg_ctl) on a free port.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { freePort, waitForPort } from './ports.ts';

export interface TestDatabase {
  url: string;
  query<T extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<pg.QueryResult<T>>;
  drop(): Promise<void>;
}

async function answers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  try { await client.connect(); await client.end(); return true; } catch { return false; }
}

function pgBin(name: string): string {
  const versions = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql').sort().reverse() : [];
  for (const v of versions) {
    const path = `/usr/lib/postgresql/${v}/bin/${name}`;
    if (existsSync(path)) return path;
  }
  return name;
}

let privateServer: { url: string; dir: string } | undefined;

async function privateCluster(): Promise<string> {
  if (privateServer) return privateServer.url;
  const dir = mkdtempSync(join(tmpdir(), 'ms-pg-'));
  chmodSync(dir, 0o777);
  const port = await freePort();
  const asPostgres = (cmd: string, args: string[]) => execFileSync('runuser', ['-u', 'postgres', '--', cmd, ...args], { stdio: 'pipe' });
  asPostgres(pgBin('initdb'), ['-D', join(dir, 'data'), '-A', 'trust', '-U', 'postgres']);
  asPostgres(pgBin('pg_ctl'), ['-D', join(dir, 'data'), '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`, '-l', join(dir, 'pg.log'), 'start', '-w']);
  await waitForPort(port);
  privateServer = { url: `postgres://postgres@127.0.0.1:${port}`, dir };
  process.once('exit', () => {
    try { asPostgres(pgBin('pg_ctl'), ['-D', join(dir, 'data'), 'stop', '-m', 'immediate']); } catch { /* already down */ }
    rmSync(dir, { recursive: true, force: true });
  });
  return privateServer.url;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const shared = 'postgres://postgres@127.0.0.1:5432';
  const server = (await answers(`${shared}/postgres`)) ? shared : await privateCluster();
  const name = `mailstream_test_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: `${server}/postgres` });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = `${server}/${name}`;
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  return {
    url,
    query: (sql, params) => pool.query(sql, params as unknown[]),
    async drop() {
      await pool.end();
      const a = new pg.Client({ connectionString: `${server}/postgres` });
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    },
  };
}
