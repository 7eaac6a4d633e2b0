// An IMAP server that speaks Gmail's extensions, for tests: hoodiecrow-imap in this process on a
// free loopback port (plain TCP), with INBOX and `[Gmail]/All Mail` (\All), X-GM-EXT-1 (message id,
// thread id, labels), CONDSTORE (unless asked not to), password (LOGIN) and XOAUTH2 logins, and
// Gmail's refusals on demand: a login, SELECT/EXAMINE or FETCH answered `NO [CODE] text`, a cap on
// simultaneous connections answered as Gmail does, sessions ended with `* BYE`. Nothing is written to disk; `close()` ends it all.
import { createRequire } from 'node:module';
import type { AddressInfo, Server, Socket } from 'node:net';

interface StoredMessage {
  raw: string;
  flags: string[];
  uid: number;
  'X-GM-MSGID'?: string;
  'X-GM-THRID'?: string;
  'X-GM-LABELS'?: string[];
}
interface Connection {
  state: string;
  socket: Socket | null;
  inputHandler: ((line: string) => void) | false;
  send(response: unknown, description: string, parsed?: unknown, data?: unknown): void;
}
interface Parsed { tag: string; command: string; attributes?: Array<{ type: string; value: string }> }
type CommandHandler = (connection: Connection, parsed: Parsed, data: string, done: () => void) => void;
interface Hoodiecrow {
  server: Server;
  users: Record<string, { password?: string }>;
  fetchHandlers: Record<string, (connection: Connection, message: StoredMessage) => unknown>;
  connectionHandlers: Array<(connection: Connection) => void>;
  listen(port: number, host: string, done: () => void): void;
  registerCapability(name: string, available?: (connection: Connection) => boolean): void;
  getCommandHandler(command: string): CommandHandler | false;
  setCommandHandler(command: string, handler: CommandHandler): void;
  appendMessage(mailbox: string, flags: string[], internaldate: Date, raw: string): { message: StoredMessage };
  /** What ENABLE may turn on (the ENABLE plugin's list). */
  enableAvailable: string[];
}

// hoodiecrow-imap ships no types; this is the part of its API the tests use.
const hoodiecrow = createRequire(import.meta.url)('hoodiecrow-imap') as (options: Record<string, unknown>) => Hoodiecrow;

export const ALL_MAIL = '[Gmail]/All Mail';

/** How Gmail refuses: the status, a response code (THROTTLED, ALERT, OVERQUOTA, ...) and its text. */
export interface Refusal { status?: 'NO' | 'BAD'; code: string; text: string }

/** Where a refusal applies: logins (LOGIN, AUTHENTICATE XOAUTH2), opening a mailbox, fetching. */
export type RefusalPoint = 'login' | 'select' | 'fetch';

const COMMANDS: Record<RefusalPoint, string[]> = {
  login: ['LOGIN', 'AUTHENTICATE XOAUTH2'],
  select: ['SELECT', 'EXAMINE'],
  fetch: ['FETCH', 'UID FETCH'],
};

export interface GmailMessage {
  raw: Buffer | string;
  /** X-GM-MSGID (decimal, 64-bit); default: the server's next one. */
  msgId?: string;
  threadId?: string;
  labels?: string[];
  flags?: string[];
  internalDate?: Date;
}

export interface GmailImapOptions {
  user?: string;
  password?: string;
  /** Decides an XOAUTH2 login (Gmail asks Google's token service); default: refuse every token. */
  checkToken?: (user: string, token: string) => Promise<boolean>;
  /** Offer CONDSTORE (Gmail does); false makes a server whose changes only a scan finds. @default true */
  condstore?: boolean;
}

export interface GmailImap {
  host: string;
  port: number;
  user: string;
  password: string;
  /** Adds a message to a mailbox (INBOX or ALL_MAIL); a selected session is told (EXISTS). */
  add(mailbox: string, message: GmailMessage): { uid: number; msgId: string };
  /** Answers every command at that point with the refusal, until called again with undefined. */
  refuse(point: RefusalPoint, refusal: Refusal | undefined): void;
  /** Refuses logins past this many logged-in connections, as Gmail does (about 15 per account). */
  maxConnections: number;
  /** Commands seen at each point, refused ones included. */
  counts: Record<RefusalPoint, number>;
  /** Logged-in connections now. */
  loggedIn(): number;
  /** Ends every logged-in session with `* BYE <text>`, as Gmail does when an access token expires. */
  dropSessions(text: string): void;
  close(): Promise<void>;
}

const TOO_MANY: Refusal = { code: 'ALERT', text: 'Too many simultaneous connections. (Failure)' };

function answer(connection: Connection, parsed: Parsed, data: string, refusal: Refusal): void {
  connection.send({
    tag: parsed.tag,
    command: refusal.status ?? 'NO',
    attributes: [{ type: 'SECTION', section: [{ type: 'ATOM', value: refusal.code }] }, { type: 'TEXT', value: refusal.text }],
  }, 'REFUSED', parsed, data);
}

/** XOAUTH2 as Gmail answers it: a bad token gets a JSON challenge, then `NO [AUTHENTICATIONFAILED]`. */
function xoauth2(checkToken: (user: string, token: string) => Promise<boolean>): CommandHandler {
  return (connection, parsed, data, done) => {
    const [user = '', auth = ''] = Buffer.from(parsed.attributes?.[0]?.value ?? '', 'base64').toString('utf8').split('\x01');
    const login = user.replace(/^user=/, '');
    const token = auth.replace(/^auth=Bearer /, '');
    checkToken(login, token).catch(() => false).then((valid) => {
      if (valid) {
        connection.state = 'Authenticated';
        connection.send({ tag: parsed.tag, command: 'OK', attributes: [{ type: 'TEXT', value: `${login} authenticated (Success)` }] }, 'XOAUTH2 OK', parsed, data);
        return done();
      }
      const challenge = Buffer.from(JSON.stringify({ status: '400', schemes: 'Bearer', scope: 'https://mail.google.com/' })).toString('base64');
      connection.send({ tag: '+', attributes: [{ type: 'ATOM', value: challenge }] }, 'XOAUTH2 CHALLENGE', parsed, data);
      connection.inputHandler = () => {
        connection.inputHandler = false;
        answer(connection, parsed, data, { code: 'AUTHENTICATIONFAILED', text: 'Invalid credentials (Failure)' });
      };
      done();
    });
  };
}

export async function startGmailImap(options: GmailImapOptions = {}): Promise<GmailImap> {
  const user = options.user ?? 'user@gmail.example';
  const password = options.password ?? 'gmail-app-password';
  const server = hoodiecrow({
    plugins: ['ID', 'IDLE', 'SASL-IR', 'ENABLE', ...(options.condstore === false ? [] : ['CONDSTORE']), 'UIDPLUS', 'SPECIAL-USE', 'NAMESPACE', 'UNSELECT', 'X-GM-EXT-1'],
    users: { [user]: { password } },
    storage: {
      INBOX: { messages: [] },
      '': { separator: '/', folders: { '[Gmail]': { flags: ['\\Noselect'], folders: { 'All Mail': { 'special-use': '\\All', messages: [] } } } } },
    },
  });
  // The two gaps of hoodiecrow's Gmail plugin: it never announces X-GM-EXT-1, and has no thread ids.
  server.registerCapability('X-GM-EXT-1', () => true);
  server.fetchHandlers['X-GM-THRID'] = (_c, m) => ({ type: 'ATOM', value: String(m['X-GM-THRID'] ?? m['X-GM-MSGID']) });
  // A third gap: its ENABLE never answers `* ENABLED ...` (RFC 5161), so a client (imapflow) does
  // not know CONDSTORE is on, as it is with Gmail.
  const enable = server.getCommandHandler('ENABLE');
  if (!enable) throw new Error('hoodiecrow has no handler for ENABLE');
  server.setCommandHandler('ENABLE', (connection, parsed, data, done) => {
    const granted = (parsed.attributes ?? []).map((a) => String(a.value).toUpperCase()).filter((c) => server.enableAvailable.includes(c));
    if (granted.length > 0 && connection.state === 'Authenticated') {
      connection.send({ tag: '*', command: 'ENABLED', attributes: granted.map((value) => ({ type: 'ATOM', value })) }, 'ENABLED', parsed, data);
    }
    enable(connection, parsed, data, done);
  });
  server.registerCapability('AUTH=XOAUTH2', (c) => c.state === 'Not Authenticated');
  server.setCommandHandler('AUTHENTICATE XOAUTH2', xoauth2(options.checkToken ?? (async () => false)));

  const sockets = new Set<Socket>();
  const sessions = new Set<Connection>();
  server.connectionHandlers.push((connection) => {
    const socket = connection.socket!;
    sockets.add(socket);
    socket.once('close', () => { sockets.delete(socket); sessions.delete(connection); });
  });

  const refusals: Partial<Record<RefusalPoint, Refusal>> = {};
  const counts: Record<RefusalPoint, number> = { login: 0, select: 0, fetch: 0 };
  const api = {
    maxConnections: Number.POSITIVE_INFINITY,
  } as GmailImap;
  for (const point of Object.keys(COMMANDS) as RefusalPoint[]) {
    for (const command of COMMANDS[point]) {
      const original = server.getCommandHandler(command);
      if (!original) throw new Error(`hoodiecrow has no handler for ${command}`);
      server.setCommandHandler(command, (connection, parsed, data, done) => {
        counts[point] += 1;
        const refusal = refusals[point] ?? (point === 'login' && sessions.size >= api.maxConnections ? TOO_MANY : undefined);
        if (refusal) { answer(connection, parsed, data, refusal); return done(); }
        original(connection, parsed, data, () => {
          if (point === 'login' && connection.state === 'Authenticated') sessions.add(connection);
          done();
        });
      });
    }
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(api, {
    host: '127.0.0.1',
    port: (server.server.address() as AddressInfo).port,
    user,
    password,
    counts,
    add(mailbox: string, message: GmailMessage) {
      const raw = typeof message.raw === 'string' ? message.raw : message.raw.toString('binary');
      const { message: stored } = server.appendMessage(mailbox, message.flags ?? [], message.internalDate ?? new Date(), raw);
      if (message.msgId) stored['X-GM-MSGID'] = message.msgId;
      if (message.threadId) stored['X-GM-THRID'] = message.threadId;
      if (message.labels) stored['X-GM-LABELS'] = [...message.labels];
      return { uid: stored.uid, msgId: stored['X-GM-MSGID']! };
    },
    refuse(point: RefusalPoint, refusal: Refusal | undefined) { refusals[point] = refusal; },
    loggedIn: () => sessions.size,
    dropSessions(text: string) {
      for (const connection of sessions) {
        connection.send({ tag: '*', command: 'BYE', attributes: [{ type: 'TEXT', value: text }] }, 'BYE');
        connection.socket?.end();
      }
      sessions.clear();
    },
    close: () => new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.server.close(() => resolve());
    }),
  });
}

/** Settings of a producer reading this server: plain TCP, a password login unless `oauth` says otherwise. */
export function gmailProducerEnv(gmail: GmailImap, options: { redisUrl: string; prefix: string; mailboxes?: string[]; extra?: Record<string, string> }): Record<string, string> {
  return {
    REDIS_URL: options.redisUrl,
    MAILSTREAM_PREFIX: options.prefix,
    IMAP_HOST: gmail.host,
    IMAP_PORT: String(gmail.port),
    IMAP_SECURE: 'false',
    IMAP_USER: gmail.user,
    IMAP_AUTH: 'password',
    IMAP_PASSWORD: gmail.password,
    IMAP_MAILBOXES: (options.mailboxes ?? ['INBOX']).join(','),
    START_FROM: 'all',
    HTTP_PORT: '0',
    RECONNECT_BASE_MS: '100',
    RECONNECT_MAX_MS: '1000',
    LEASE_TTL_MS: '5000',
    ...options.extra,
  };
}
