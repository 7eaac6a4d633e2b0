// Sinks that deliver email by email (webhook, module `handle`) share one cap on what is in
// flight: the worker runs one read loop per account, and several may hand the sink a batch at the
// same moment, so the cap lives in the sink, not in one call.
import type { Delivery, Outcome } from './types.ts';

/** The worker gave up on the batch (shutdown) before this email was sent: nothing was attempted. */
export const NOT_ATTEMPTED: Extract<Outcome, { status: 'retry' }> = Object.freeze({ status: 'retry', reason: 'not sent: the worker gave up on the batch (shutdown)' });

export class InFlightLimit {
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  private readonly limit: number;

  constructor(limit: number) {
    this.limit = Math.max(1, limit);
  }

  get inFlight(): number { return this.active; }

  /** Resolves true holding a slot, or false (holding none) when `signal` aborts first. */
  acquire(signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return Promise.resolve(false);
    if (this.active < this.limit) {
      this.active += 1;
      return Promise.resolve(true);
    }
    return new Promise<boolean>((resolve) => {
      const grant = () => { signal.removeEventListener('abort', withdraw); resolve(true); };
      const withdraw = () => {
        const at = this.waiting.indexOf(grant);
        if (at >= 0) this.waiting.splice(at, 1);
        resolve(false);
      };
      this.waiting.push(grant);
      signal.addEventListener('abort', withdraw, { once: true });
    });
  }

  release(): void {
    // The slot goes straight to the next waiter, so a new caller cannot slip in between.
    const next = this.waiting.shift();
    if (next) next(); else this.active -= 1;
  }
}

/**
 * Runs `deliverOne` for every email of the batch, as many at once as the limit allows, in the
 * batch's order; `deliverOne` answers with an outcome and does not throw.
 */
export function deliverEach(batch: readonly Delivery[], limit: InFlightLimit, signal: AbortSignal, deliverOne: (delivery: Delivery) => Promise<Outcome>): Promise<Outcome[]> {
  return Promise.all(batch.map(async (delivery) => {
    if (!(await limit.acquire(signal))) return NOT_ATTEMPTED;
    try {
      return await deliverOne(delivery);
    } finally {
      limit.release();
    }
  }));
}
