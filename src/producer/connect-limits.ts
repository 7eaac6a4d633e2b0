// How one producer process opens IMAP connections, shared by all its accounts and mailboxes: the
// login pacer (IMAP_CONNECT_RATE) and a cap per host (IMAP_MAX_CONNECTIONS_PER_HOST). What waits
// on either is a gauge (mailstream_imap_connect_waiting), every login started a counter
// (mailstream_imap_connects_total), and both are on /status.
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../core/metrics.ts';
import { ConnectPacer } from './connect-pacer.ts';
import { HostSlots } from './connect-slots.ts';

export interface ConnectLimitsStatus {
  connectRatePerSecond: number;
  connectBurst: number;
  /** Logins waiting for the pacer now. */
  waitingForRate: number;
  hosts: Array<{ host: string; open: number; cap: number | null; waiting: number }>;
}

export class ConnectLimits {
  private readonly pacer: ConnectPacer;
  private readonly hosts = new Map<string, HostSlots>();
  private readonly capPerHost: number;
  private readonly metrics: Metrics;
  private readonly logger: Logger;

  constructor(settings: { connectRate: number; maxConnectionsPerHost: number }, deps: { metrics: Metrics; logger: Logger }) {
    this.metrics = deps.metrics;
    this.logger = deps.logger;
    this.capPerHost = settings.maxConnectionsPerHost;
    this.metrics.imapConnectWaiting.set({ reason: 'rate' }, 0);
    this.metrics.imapConnectWaiting.set({ reason: 'host-cap' }, 0);
    this.pacer = new ConnectPacer(settings.connectRate, { onWaiting: (n) => this.metrics.imapConnectWaiting.set({ reason: 'rate' }, n) });
  }

  /** The slots of one host (case does not make another host). */
  slots(host: string): HostSlots {
    const name = host.toLowerCase();
    let slots = this.hosts.get(name);
    if (!slots) {
      slots = new HostSlots(name, this.capPerHost, () => this.metrics.imapConnectWaiting.set({ reason: 'host-cap' }, this.waitingForSlots()));
      this.hosts.set(name, slots);
      this.metrics.imapConnects.inc({ host: name }, 0);
    }
    return slots;
  }

  /** Waits for the pacer's token, then counts the login as started (ConnectStoppedError if stopped meanwhile). */
  async pace(host: string, signal?: AbortSignal, onQueued?: () => void): Promise<void> {
    await this.pacer.acquire(signal, onQueued);
    const name = host.toLowerCase();
    this.metrics.imapConnects.inc({ host: name });
    // The record the pacing tests count: one line per login started, at the moment it may start.
    this.logger.debug({ host: name, at: Date.now() }, 'imap login started');
  }

  get waitingForRate(): number { return this.pacer.waiting; }

  private waitingForSlots(): number {
    let n = 0;
    for (const slots of this.hosts.values()) n += slots.waiting;
    return n;
  }

  status(): ConnectLimitsStatus {
    return {
      connectRatePerSecond: this.pacer.ratePerSecond,
      connectBurst: this.pacer.burst,
      waitingForRate: this.pacer.waiting,
      hosts: [...this.hosts.values()].map((s) => ({ host: s.host, open: s.open, cap: s.cap === 0 ? null : s.cap, waiting: s.waiting })),
    };
  }

  close(): void {
    this.pacer.close();
  }
}
