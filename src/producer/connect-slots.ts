// The per-host connection cap (IMAP_MAX_CONNECTIONS_PER_HOST): at most `cap` mailbox connections
// of this producer to one IMAP host at a time. A mailbox past the cap waits in line instead of
// failing, and mailboxes take turns: when one waits, the holder that got its slot first is asked
// to hand it over at its next quiet moment (in sync, before it waits for new mail), so every
// mailbox is read even when there are more of them than slots.

export interface HostSlot {
  /** Gives the slot back: the next mailbox in line gets it. Safe to call twice. */
  release(): void;
  /** True while a mailbox that asked for this slot still waits. */
  readonly wanted: boolean;
}

interface Held { wanted: boolean; onWanted: () => void; released: boolean }
interface Waiter { grant: (held: Held) => void; onWanted: () => void }

export class HostSlots {
  readonly host: string;
  /** 0: no cap. */
  readonly cap: number;
  // Insertion order is the order slots were taken: the first unasked entry has held longest.
  private readonly held = new Set<Held>();
  private readonly queue: Waiter[] = [];
  private readonly onWaiting: (waiting: number) => void;

  constructor(host: string, cap: number, onWaiting: (waiting: number) => void = () => undefined) {
    this.host = host;
    this.cap = cap;
    this.onWaiting = onWaiting;
  }

  get open(): number { return this.held.size; }
  get waiting(): number { return this.queue.length; }

  /** Whether an acquire now would wait in line. */
  get full(): boolean { return this.queue.length > 0 || (this.cap !== 0 && this.held.size >= this.cap); }

  /**
   * Resolves with a slot, at once while the host is under its cap, else when one is handed over;
   * resolves undefined if `signal` aborts first. `onWanted` is called (once) when a mailbox waits for this slot.
   */
  acquire(onWanted: () => void, signal?: AbortSignal): Promise<HostSlot | undefined> {
    if (signal?.aborted) return Promise.resolve(undefined);
    if (!this.full) return Promise.resolve(this.take({ wanted: false, onWanted, released: false }));
    return new Promise((resolve) => {
      const waiter: Waiter = {
        onWanted,
        grant: (held) => { signal?.removeEventListener('abort', onAbort); resolve(this.take(held)); },
      };
      const onAbort = () => {
        const at = this.queue.indexOf(waiter);
        if (at >= 0) this.queue.splice(at, 1);
        this.onWaiting(this.queue.length);
        resolve(undefined);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(waiter);
      this.onWaiting(this.queue.length);
      this.askForTurns();
    });
  }

  private take(held: Held): HostSlot {
    this.held.add(held);
    const queue = this.queue;
    return {
      release: () => this.release(held),
      // Asked, and still somebody waits: a waiter that went (stopped, served by a slot freed
      // otherwise) leaves no holder handing its connection over to nobody.
      get wanted() { return held.wanted && queue.length > 0; },
    };
  }

  private release(held: Held): void {
    if (held.released) return;
    held.released = true;
    this.held.delete(held);
    const next = this.queue.shift();
    if (!next) return;
    this.onWaiting(this.queue.length);
    next.grant({ wanted: false, onWanted: next.onWanted, released: false });
    // The newcomer may itself be wanted already, by whoever still waits.
    this.askForTurns();
  }

  /** One holder asked per waiting mailbox, longest-held first. */
  private askForTurns(): void {
    let asked = 0;
    for (const held of this.held) if (held.wanted) asked += 1;
    for (const held of this.held) {
      if (asked >= this.queue.length) return;
      if (held.wanted) continue;
      held.wanted = true;
      asked += 1;
      held.onWanted();
    }
  }
}
