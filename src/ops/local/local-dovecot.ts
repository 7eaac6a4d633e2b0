// A private Dovecot (IMAP plain + implicit TLS) on free loopback ports, with its own config dir,
// passwd-file users and, when asked, an oauth2 passdb for XOAUTH2/OAUTHBEARER that asks a local
// token server. It seeds Maildirs directly (fast) or by IMAP APPEND, forces UIDVALIDITY changes,
// and can be stopped, killed and restarted on the same ports and data. The demo, the load test,
// the bench and the tests all run their IMAP server through here.
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ImapFlow } from 'imapflow';
import { killTree, spawnChild, stopChild, type ChildHandle, type ServiceControl, type SpawnFn } from './child-process.ts';
import { freePort, waitForPort } from './ports.ts';
import { makeCertificates } from './tls-certs.ts';

const run = promisify(execFile);

export interface DovecotUser { user: string; password: string }

export interface DovecotOptions {
  users?: DovecotUser[];
  /** RFC 7662 introspection endpoint for the oauth2 passdb (see oauth-server.ts). */
  introspectionUrl?: string;
  /** Offer OAUTHBEARER too (imapflow then prefers it); off to exercise XOAUTH2 itself. */
  oauthbearer?: boolean;
  /** How the server process is started (the tests pass one that tracks it). */
  spawn?: SpawnFn;
  /** SPECIAL-USE attributes (RFC 6154) the server announces, by mailbox name: `{ Papierkorb: '\\Trash' }`. */
  specialUse?: Record<string, string>;
}

export interface Dovecot extends ServiceControl {
  host: string;
  /** Plain IMAP port. */
  port: number;
  /** Implicit-TLS IMAP port. */
  tlsPort: number;
  caFile: string;
  dir: string;
  users: DovecotUser[];
  conf: string;
  maildir(user: string, mailbox?: string): string;
  /** Writes messages straight into the Maildir (`cur/`), in order: UIDs follow the order given. */
  seed(user: string, mailbox: string, messages: Buffer[]): void;
  /** IMAP APPEND over a password login, as a mail server delivering would. */
  append(user: string, mailbox: string, messages: Buffer[]): Promise<void>;
  createMailbox(user: string, mailbox: string): void;
  doveadm(...args: string[]): Promise<string>;
  /** Sets a new UIDVALIDITY (UIDs kept); Dovecot drops sessions that have the mailbox selected. */
  changeUidValidity(user: string, mailbox: string, uidValidity?: number): Promise<number>;
  /** The harsh case: index and uidlist removed, every message renumbered from UID 1. */
  renumber(user: string, mailbox: string): Promise<void>;
  status(user: string, mailbox: string): Promise<{ messages: number; uidNext: number; uidValidity: number }>;
  /** The running master process, if any. */
  process(): ChildHandle | undefined;
}

const seq = new Map<string, number>();

export async function startDovecot(options: DovecotOptions = {}): Promise<Dovecot> {
  const spawn = options.spawn ?? spawnChild;
  const dir = mkdtempSync(join(tmpdir(), 'ms-dovecot-'));
  chmodSync(dir, 0o755); // the mail processes run as nobody and must reach their Maildir
  const port = await freePort();
  const tlsPort = await freePort();
  const certs = makeCertificates(join(dir, 'tls'));
  const users = options.users ?? [{ user: 'user@example.com', password: 'secret-password' }];
  const conf = join(dir, 'dovecot.conf');
  const mailRoot = join(dir, 'mail');
  mkdirSync(mailRoot, { recursive: true });
  chmodSync(mailRoot, 0o777);
  for (const sub of ['run', 'state']) mkdirSync(join(dir, sub), { recursive: true });

  writeFileSync(join(dir, 'users'), users.map((u) => `${u.user}:{PLAIN}${u.password}::::::`).join('\n') + '\n');
  const mechanisms = ['plain', 'login', 'xoauth2', ...(options.oauthbearer ? ['oauthbearer'] : [])];
  const oauthPassdb = options.introspectionUrl ? `
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = ${join(dir, 'oauth2.conf.ext')}
}` : '';
  // Without a namespace block Dovecot makes the same default one (inbox, `.` separator on Maildir)
  // but marks no mailbox: SPECIAL-USE needs it spelled out.
  const namespace = options.specialUse ? `
namespace inbox {
  inbox = yes
${Object.entries(options.specialUse).map(([name, use]) => `  mailbox "${name}" {\n    special_use = ${use}\n  }`).join('\n')}
}` : '';
  if (options.introspectionUrl) {
    writeFileSync(join(dir, 'oauth2.conf.ext'), [
      'introspection_mode = post',
      `introspection_url = ${options.introspectionUrl}`,
      'username_attribute = email',
      'active_attribute = active',
      'active_value = true',
      '',
    ].join('\n'));
  }
  writeFileSync(conf, `
instance_name = ms-${port}
base_dir = ${join(dir, 'run')}
state_dir = ${join(dir, 'state')}
log_path = ${join(dir, 'dovecot.log')}
listen = 127.0.0.1
protocols = imap
mail_location = maildir:${mailRoot}/%u/Maildir
first_valid_uid = 100
mail_fsync = never
auth_failure_delay = 0
disable_plaintext_auth = no
ssl = yes
ssl_cert = <${certs.certFile}
ssl_key = <${certs.keyFile}
auth_mechanisms = ${mechanisms.join(' ')}
protocol imap {
  mail_max_userip_connections = 100
}
passdb {
  driver = passwd-file
  args = ${join(dir, 'users')}
  mechanisms = plain login
}${oauthPassdb}${namespace}
userdb {
  driver = passwd-file
  args = ${join(dir, 'users')}
  default_fields = uid=nobody gid=nogroup home=${mailRoot}/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = ${port}
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = ${tlsPort}
    ssl = yes
  }
}
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
`);

  let proc: ChildHandle | undefined;
  const maildir = (user: string, mailbox = 'INBOX') => {
    const root = join(mailRoot, user, 'Maildir');
    return mailbox === 'INBOX' ? root : join(root, `.${mailbox}`);
  };
  const chownMail = () => run('chown', ['-R', 'nobody:nogroup', mailRoot]);

  const dovecot: Dovecot = {
    host: '127.0.0.1',
    port,
    tlsPort,
    caFile: certs.caFile,
    dir,
    users,
    conf,
    maildir,
    createMailbox(user, mailbox) {
      const path = maildir(user, mailbox);
      for (const sub of ['cur', 'new', 'tmp']) mkdirSync(join(path, sub), { recursive: true });
      if (mailbox !== 'INBOX') writeFileSync(join(path, 'maildirfolder'), '');
    },
    seed(user, mailbox, messages) {
      dovecot.createMailbox(user, mailbox);
      const path = maildir(user, mailbox);
      const key = path;
      let n = seq.get(key) ?? readdirSync(join(path, 'cur')).length;
      const sec = Math.floor(Date.now() / 1000);
      for (const raw of messages) {
        n += 1;
        const name = `${sec}.M${String(n).padStart(8, '0')}P${process.pid}.mailstream-local,S=${raw.length},W=${raw.length}:2,`;
        const tmp = join(path, 'tmp', name);
        writeFileSync(tmp, raw);
        renameSync(tmp, join(path, 'cur', name));
      }
      seq.set(key, n);
      // Ownership must match the mail uid before Dovecot reads the folder. A running Dovecot
      // creates and removes lock files in the tree meanwhile, and one vanishing under chown -R
      // fails it: the next pass no longer meets that file.
      for (let pass = 1; ; pass++) {
        try {
          execFileSync('chown', ['-R', 'nobody:nogroup', mailRoot], { stdio: 'pipe' });
          break;
        } catch (err) {
          if (pass >= 5) throw err;
        }
      }
      // Have Dovecot index the new files now, so their UIDs follow the seeding order even if an
      // APPEND comes before anyone opens the mailbox.
      execFileSync('doveadm', ['-c', conf, 'mailbox', 'status', '-u', user, 'messages', mailbox], { stdio: 'pipe' });
    },
    async append(user, mailbox, messages) {
      const account = users.find((u) => u.user === user);
      if (!account) throw new Error(`unknown Dovecot user ${user}`);
      const client = new ImapFlow({
        host: '127.0.0.1', port, secure: false, auth: { user, pass: account.password }, logger: false,
        tls: { ca: readFileSync(certs.caFile), servername: 'localhost' }, // STARTTLS is offered on the plain port
      });
      await client.connect();
      try {
        if (mailbox !== 'INBOX') await client.mailboxCreate(mailbox).catch(() => undefined);
        for (const raw of messages) await client.append(mailbox, raw);
      } finally {
        await client.logout().catch(() => client.close());
      }
    },
    async doveadm(...args) {
      const { stdout } = await run('doveadm', ['-c', conf, ...args]);
      return stdout;
    },
    async changeUidValidity(user, mailbox, uidValidity) {
      const current = await dovecot.status(user, mailbox);
      const next = uidValidity ?? current.uidValidity + 1000;
      await dovecot.doveadm('mailbox', 'update', '-u', user, '--uid-validity', String(next), mailbox);
      return next;
    },
    async renumber(user, mailbox) {
      await dovecot.doveadm('kick', user).catch(() => undefined);
      const path = maildir(user, mailbox);
      for (const f of readdirSync(path)) {
        if (f === 'dovecot-uidlist' || f.startsWith('dovecot.index')) rmSync(join(path, f), { force: true });
      }
    },
    async status(user, mailbox) {
      const out = await dovecot.doveadm('-f', 'flow', 'mailbox', 'status', '-u', user, 'messages uidnext uidvalidity', mailbox);
      const value = (name: string) => Number(new RegExp(`${name}=(\\d+)`).exec(out)?.[1] ?? NaN);
      return { messages: value('messages'), uidNext: value('uidnext'), uidValidity: value('uidvalidity') };
    },
    process: () => proc,
    async start() {
      await chownMail();
      proc = spawn('dovecot', ['-F', '-c', conf]);
      await Promise.all([waitForPort(port), waitForPort(tlsPort)]);
    },
    async stop() { if (proc) await stopChild(proc, 'SIGTERM'); proc = undefined; },
    async kill() { if (proc) await killTree(proc); proc = undefined; },
    async restart() { await dovecot.stop(); await dovecot.start(); },
    async destroy() {
      await dovecot.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await dovecot.start();
  return dovecot;
}
