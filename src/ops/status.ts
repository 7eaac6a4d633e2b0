// What `mailstream status` reports, read from Redis alone so it works while every daemon is down:
// per account the stream, its consumer groups and DLQ, each mailbox's sync state; the live
// producers and workers from their heartbeats, and the breakers they report.
import { accountKeys, accountOfStream, globalKeys } from '../core/keys.ts';
import { isAlive, type ProcessRecord } from '../core/heartbeat.ts';
import type { RedisClient } from '../core/redis.ts';
import { readStreamStats, type StreamStats } from '../core/stream-stats.ts';
import { globEscape, scanKeys } from './scan.ts';

export interface MailboxState {
  mailbox: string;
  uidValidity: string | null;
  lastUid: number | null;
  lastInternalDate: string | null;
  lastPollAt: string | null;
  /** What the producer last wrote about this mailbox (connection state, last error ...). */
  status: Record<string, unknown> | null;
}

export interface AccountStatus {
  account: string;
  stream: StreamStats;
  mailboxes: MailboxState[];
}

export interface ProcessStatus extends ProcessRecord { alive: boolean }

export interface BreakerStatus { process: string; role: string; breaker: string; state: string }

export interface StatusReport {
  prefix: string;
  generatedAt: string;
  accounts: AccountStatus[];
  processes: ProcessStatus[];
  breakers: BreakerStatus[];
}

/** The accounts to report: the configured one, else every account Redis knows of. */
export async function listAccounts(redis: RedisClient, prefix: string, only?: string): Promise<string[]> {
  if (only) return [only];
  const known = new Set(await redis.smembers(globalKeys(prefix).accounts));
  // A stream written before the account set existed (or by hand) still counts.
  for (const key of await scanKeys(redis, `${globEscape(prefix)}:{*}:emails`)) {
    const account = accountOfStream(prefix, key);
    if (account) known.add(account);
  }
  return [...known].sort();
}

function toNumber(value: string | undefined): number | null {
  if (value === undefined || value === '') return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}

function parseJson(text: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(text);
    return value && typeof value === 'object' ? value as Record<string, unknown> : null;
  } catch {
    return null;
  }
}

/** A heartbeat stores the time as ISO text or epoch ms; show ISO either way. */
function asIso(value: string | undefined): string | null {
  if (!value) return null;
  if (/^\d+$/.test(value)) return new Date(Number(value)).toISOString();
  return value;
}

export async function readMailboxes(redis: RedisClient, prefix: string, account: string): Promise<MailboxState[]> {
  const keys = accountKeys(prefix, account);
  const marker = keys.mailbox('');
  const stateKeys = await scanKeys(redis, `${globEscape(marker)}*`);
  const statuses = await redis.hgetall(keys.mailboxStatus);
  const names = new Set([...stateKeys.map((k) => k.slice(marker.length)), ...Object.keys(statuses)]);
  const out: MailboxState[] = [];
  for (const mailbox of [...names].sort()) {
    const h = await redis.hgetall(keys.mailbox(mailbox));
    const raw = statuses[mailbox];
    const status = raw === undefined ? null : parseJson(raw);
    // The producer keeps the poll time in its status record; older state has it in the hash.
    const polled = h.lastPollAt ?? (status?.lastPollAt === null || status?.lastPollAt === undefined ? undefined : String(status.lastPollAt));
    out.push({
      mailbox,
      uidValidity: h.uidValidity ?? null,
      lastUid: toNumber(h.lastUid),
      lastInternalDate: asIso(h.lastInternalDate),
      lastPollAt: asIso(polled),
      status,
    });
  }
  return out;
}

export async function readProcesses(redis: RedisClient, prefix: string, now = Date.now()): Promise<ProcessStatus[]> {
  const raw = await redis.hgetall(globalKeys(prefix).processes);
  const out: ProcessStatus[] = [];
  for (const text of Object.values(raw)) {
    const record = parseJson(text) as ProcessRecord | null;
    if (!record || typeof record.heartbeatAt !== 'string') continue;
    out.push({ ...record, alive: isAlive(record, now) });
  }
  return out.sort((a, b) => a.role.localeCompare(b.role) || a.id.localeCompare(b.id));
}

/**
 * Breakers as a heartbeat reports them: `breakers` as `{name: state}` or `[{name, state}]`, or a
 * worker's single sink breaker as `breaker: state`.
 */
export function breakersOf(record: ProcessRecord): BreakerStatus[] {
  const reported = record.breakers ?? (typeof record.breaker === 'string' ? { sink: record.breaker } : undefined);
  const entries: [string, string][] = Array.isArray(reported)
    ? reported.flatMap((b: { name?: unknown; breaker?: unknown; state?: unknown }) => [[String(b.name ?? b.breaker), String(b.state)] as [string, string]])
    : reported && typeof reported === 'object'
      ? Object.entries(reported as Record<string, unknown>).map(([name, state]) => [name, String(state)] as [string, string])
      : [];
  return entries.map(([breaker, state]) => ({ process: record.id, role: record.role, breaker, state }));
}

export async function gatherStatus(redis: RedisClient, options: { prefix: string; account?: string }): Promise<StatusReport> {
  const accounts: AccountStatus[] = [];
  for (const account of await listAccounts(redis, options.prefix, options.account)) {
    const keys = accountKeys(options.prefix, account);
    accounts.push({
      account,
      stream: await readStreamStats(redis, keys, { consumers: true }),
      mailboxes: await readMailboxes(redis, options.prefix, account),
    });
  }
  const processes = await readProcesses(redis, options.prefix);
  const breakers = processes.filter((p) => p.alive).flatMap(breakersOf);
  return { prefix: options.prefix, generatedAt: new Date().toISOString(), accounts, processes, breakers };
}
