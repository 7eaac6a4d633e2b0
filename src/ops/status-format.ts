// `mailstream status` for people: one section per account (stream, groups, consumers,
// mailboxes) and one for the processes and their breakers.
import type { StatusReport } from './status.ts';
import { table } from './table.ts';

function ago(iso: string | null, now: number): string {
  if (!iso) return '-';
  const ms = now - Date.parse(iso);
  if (!Number.isFinite(ms)) return iso;
  const s = Math.max(0, Math.round(ms / 1000));
  const text = s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : s < 172_800 ? `${Math.round(s / 3600)}h` : `${Math.round(s / 86_400)}d`;
  return `${iso} (${text} ago)`;
}

export function formatStatus(report: StatusReport, now = Date.now()): string {
  const out: string[] = [`mailstream status  prefix=${report.prefix}  at ${report.generatedAt}`, ''];
  if (report.accounts.length === 0) out.push('No accounts in Redis yet (no producer has run with this prefix).', '');
  for (const { account, stream, mailboxes } of report.accounts) {
    out.push(`== account ${account}`);
    out.push(`stream ${stream.stream}: ${stream.length} entries (first ${stream.firstId ?? '-'}, last ${stream.lastId ?? '-'}); DLQ: ${stream.dlqLength}`);
    out.push('');
    out.push(stream.groups.length === 0
      ? 'consumer groups: none (no worker has started yet)'
      : table(['group', 'lag', 'pending', 'last-delivered-id', 'entries-read', 'consumers'],
        stream.groups.map((g) => [g.name, g.lag ?? 'unknown', g.pending, g.lastDeliveredId, g.entriesRead, g.consumers.length])));
    const consumers = stream.groups.flatMap((g) => g.consumers.map((c) => [g.name, c.name, c.pending, `${Math.round(c.idleMs / 1000)}s`]));
    if (consumers.length > 0) out.push('', table(['group', 'consumer', 'pending', 'idle'], consumers));
    out.push('');
    out.push(mailboxes.length === 0
      ? 'mailboxes: none synced yet'
      : table(['mailbox', 'uidValidity', 'lastUid', 'lastInternalDate', 'lastPollAt', 'state'],
        mailboxes.map((m) => [m.mailbox, m.uidValidity, m.lastUid, m.lastInternalDate, ago(m.lastPollAt, now), stateOf(m.status)])));
    out.push('');
  }
  out.push('== processes');
  out.push(report.processes.length === 0
    ? 'none registered (no producer or worker is running)'
    : table(['role', 'id', 'host', 'pid', 'alive', 'last heartbeat', 'http'],
      report.processes.map((p) => [p.role, p.id, p.host, p.pid, p.alive ? 'yes' : 'NO', ago(p.heartbeatAt, now), p.httpUrl])));
  if (report.breakers.length > 0) {
    out.push('', table(['process', 'breaker', 'state'], report.breakers.map((b) => [b.process, b.breaker, b.state === 'open' ? 'OPEN' : b.state])));
  }
  return `${out.join('\n')}\n`;
}

function stateOf(status: Record<string, unknown> | null): string {
  if (!status) return '-';
  const state = status.state ?? status.status ?? (status.connected === true ? 'connected' : status.connected === false ? 'disconnected' : undefined);
  const error = status.lastError ?? status.error;
  return [state, error ? `error: ${String(error)}` : undefined].filter(Boolean).join(', ') || '-';
}
