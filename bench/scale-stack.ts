// The scale section's installation on loopback: a private Redis and one Dovecot with one account
// per mailbox (up to thousands), configured for that many connections, and accounts files naming
// any subset of those accounts, read by `mailstream producer|worker` through ACCOUNTS_FILE the way
// an operator runs them.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDovecot, type Dovecot } from '../src/ops/local/local-dovecot.ts';
import { startLocalRedis, type LocalRedis } from '../src/ops/local/local-redis.ts';

/** Every account logs in with this password, read by reference from the producer's environment. */
const PASSWORD_ENV = 'SCALE_IMAP_PASSWORD';
const PASSWORD = 'scale-password';

export interface ScaleStack {
  redis: LocalRedis;
  dovecot: Dovecot;
  /** The accounts' users, `box0001@scale.local` onwards, one INBOX each (kept empty). */
  users: readonly string[];
  /** Accounts apart from those, for runs that put mail in them. */
  busy: string;
  quiet: string;
  steady: string;
  /** Writes an accounts file naming these users (INBOX each, password by reference); returns its path. */
  accountsFile(users: readonly string[]): string;
  producerEnv(accountsFile: string, extra?: Record<string, string>): Record<string, string>;
  workerEnv(accountsFile: string, sinkUrl: string, extra?: Record<string, string>): Record<string, string>;
  /** A password login for one of the users, for appending mail to it. */
  login(user: string): { host: string; port: number; caFile: string; user: string; pass: string };
  stop(): Promise<void>;
}

/**
 * Dovecot's defaults stop near 100 processes per service and 1,000 clients: raise what a few
 * thousand TLS sessions need. imap-login serves many clients per process (it proxies TLS for the
 * whole session, so one process per connection would double the processes); imap keeps one
 * process per session, as in production. Each user holds one connection, two during a takeover.
 */
function connectionLimits(sessions: number): string {
  const processes = sessions + 200;
  return `
default_process_limit = ${processes}
default_client_limit = ${processes * 4}
service imap-login {
  service_count = 0
  process_min_avail = 2
  client_limit = ${processes}
}
service imap {
  process_limit = ${processes}
}
protocol imap {
  mail_max_userip_connections = 20
}
`;
}

export async function startScaleStack(accounts: number): Promise<ScaleStack> {
  const dir = mkdtempSync(join(tmpdir(), 'ms-bench-scale-'));
  const users = Array.from({ length: accounts }, (_, i) => `box${String(i + 1).padStart(4, '0')}@scale.local`);
  const [busy, quiet, steady] = ['busy', 'quiet', 'steady'].map((name) => `${name}@scale.local`) as [string, string, string];
  const redis = await startLocalRedis();
  let dovecot: Dovecot;
  try {
    dovecot = await startDovecot({ users: [...users, busy, quiet, steady].map((user) => ({ user, password: PASSWORD })) });
  } catch (err) {
    await redis.destroy();
    throw err;
  }
  // The local Dovecot writes its configuration for a handful of sessions; a reload applies the
  // limits to every process started from now on (none of ours has connected yet).
  writeFileSync(dovecot.conf, readFileSync(dovecot.conf, 'utf8') + connectionLimits(accounts * 2));
  await dovecot.doveadm('reload');
  let files = 0;
  return {
    redis,
    dovecot,
    users,
    busy,
    quiet,
    steady,
    accountsFile(subset) {
      const path = join(dir, `accounts-${++files}.json`);
      writeFileSync(path, JSON.stringify({
        defaults: { host: '127.0.0.1', port: dovecot.tlsPort, secure: true, tlsCaFile: dovecot.caFile, auth: 'password', mailboxes: ['INBOX'] },
        accounts: subset.map((user) => ({ user, password: { env: PASSWORD_ENV } })),
      }));
      return path;
    },
    producerEnv: (accountsFile, extra = {}) => ({
      REDIS_URL: redis.url, ACCOUNTS_FILE: accountsFile, [PASSWORD_ENV]: PASSWORD, START_FROM: 'all', LOG_LEVEL: 'warn', ...extra,
    }),
    workerEnv: (accountsFile, sinkUrl, extra = {}) => ({
      REDIS_URL: redis.url, ACCOUNTS_FILE: accountsFile, SINK_URL: sinkUrl, LOG_LEVEL: 'warn', ...extra,
    }),
    login: (user) => ({ host: '127.0.0.1', port: dovecot.tlsPort, caFile: dovecot.caFile, user, pass: PASSWORD }),
    async stop() {
      await dovecot.destroy();
      await redis.destroy();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
