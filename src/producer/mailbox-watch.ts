// Waiting for new mail on a selected mailbox: IDLE when the server has it (and IMAP_IDLE is on),
// else polling. Either way the wait ends at least every min(POLL_INTERVAL_MS, NOOP_INTERVAL_MS,
// IDLE_RESTART_MS) with a NOOP that must answer in time: IDLE connections die silently, and the
// NOOP is what notices (and re-issuing IDLE keeps under the 29-minute limit of RFC 9051).
import type { ImapFlow } from 'imapflow';
import { sleep } from '../core/backoff.ts';
import type { SyncSettings } from './mailbox-context.ts';

/** How long a NOOP may take before the connection is declared dead: NOOP_INTERVAL_MS, within 2-30 s. */
export function livenessTimeout(settings: SyncSettings): number {
  return Math.min(30_000, Math.max(2_000, settings.noopIntervalMs));
}

export class ImapLivenessError extends Error {
  constructor(mailbox: string, timeoutMs: number) {
    super(`IMAP server did not answer a NOOP on ${mailbox} within ${timeoutMs / 1000} s`);
    this.name = 'ImapLivenessError';
  }
}

export type WakeReason = 'new-mail' | 'timer' | 'closed' | 'stopping';

export interface WatchSignals {
  /** Resolves when the server reports new messages (EXISTS). */
  newMail: Promise<void>;
  /** Resolves when the connection closes. */
  closed: Promise<void>;
  stop: AbortSignal;
}

export function useIdle(settings: SyncSettings, client: ImapFlow): boolean {
  return settings.idle && client.capabilities.has('IDLE');
}

export function wakeInterval(settings: SyncSettings, idle: boolean): number {
  return idle ? Math.min(settings.pollIntervalMs, settings.noopIntervalMs, settings.idleRestartMs) : settings.pollIntervalMs;
}

async function noopInTime(client: ImapFlow, mailbox: string, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.noop(),
      new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new ImapLivenessError(mailbox, timeoutMs)), timeoutMs); }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits for a reason to look at the mailbox again; throws ImapLivenessError on a dead connection. */
export async function waitForNewMail(client: ImapFlow, mailbox: string, settings: SyncSettings, signals: WatchSignals): Promise<WakeReason> {
  const idle = useIdle(settings, client);
  const timerStop = new AbortController();
  const idling = idle ? client.idle().catch(() => undefined) : undefined;
  const reason = await Promise.race<WakeReason>([
    signals.newMail.then(() => 'new-mail' as const),
    signals.closed.then(() => 'closed' as const),
    sleep(wakeInterval(settings, idle), AbortSignal.any([signals.stop, timerStop.signal])).then(() => (signals.stop.aborted ? 'stopping' as const : 'timer' as const)),
  ]);
  timerStop.abort();
  if (reason === 'closed' || !client.usable) return 'closed';
  // Any command ends IDLE; a NOOP also proves the server still answers.
  await noopInTime(client, mailbox, livenessTimeout(settings));
  await idling;
  return reason;
}
