// Caps deliveries in flight across every account a worker consumes (WORKER_CONCURRENCY).
export class Limiter {
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  private readonly limit: number;

  constructor(limit: number) {
    this.limit = limit;
  }

  get inFlight(): number { return this.active; }

  /** `urgent` tasks (retries due now, claimed orphans) go before everything already waiting. */
  async run<T>(task: () => Promise<T>, urgent = false): Promise<T> {
    // A finishing task hands its slot straight to the next waiter, so nothing can slip in between.
    if (this.active < this.limit) this.active += 1;
    else await new Promise<void>((resolve) => { if (urgent) this.waiting.unshift(resolve); else this.waiting.push(resolve); });
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next(); else this.active -= 1;
    }
  }
}
