// Paces the IMAP logins of one producer process (IMAP_CONNECT_RATE): a token bucket shared by
// every mailbox connection, first connects and reconnects alike, so a producer holding a thousand
// mailboxes, or all of them coming back after a server restart, opens them at a steady rate
// rather than as a thousand TLS handshakes at once. Callers queue in order of arrival; the bucket
// itself is pure (time comes in as an argument) and unit-tested.

/** A token bucket: `ratePerSecond` tokens a second, at most `burst` saved up. */
export class TokenBucket {
  private tokens: number;
  private updatedAt: number;
  readonly ratePerSecond: number;
  readonly burst: number;

  constructor(ratePerSecond: number, burst: number, now: number) {
    this.ratePerSecond = ratePerSecond;
    this.burst = burst;
    this.tokens = burst;
    this.updatedAt = now;
  }

  private refill(now: number): void {
    // A clock that steps back adds nothing rather than taking tokens away.
    const elapsed = Math.max(0, now - this.updatedAt);
    this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.ratePerSecond) / 1000);
    this.updatedAt = Math.max(this.updatedAt, now);
  }

  /** Takes a token if one is there and returns 0; otherwise takes nothing and returns the ms until one is. */
  take(now: number): number {
    this.refill(now);
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.tokens) * 1000) / this.ratePerSecond);
  }
}

/** Burst of a rate: small, so even a freshly started producer never opens more than a handful at once. */
export function connectBurst(ratePerSecond: number): number {
  return Math.max(1, Math.min(5, Math.floor(ratePerSecond)));
}

export class ConnectStoppedError extends Error {
  constructor() {
    super('stopped while waiting to connect');
    this.name = 'ConnectStoppedError';
  }
}

interface Waiter { resolve: () => void; reject: (err: Error) => void }

export interface PacerHooks {
  /** Callers waiting for a token now (the mailstream_imap_connect_waiting gauge). */
  onWaiting?: (waiting: number) => void;
  now?: () => number;
}

export class ConnectPacer {
  private readonly bucket: TokenBucket;
  private readonly queue: Waiter[] = [];
  private readonly hooks: PacerHooks;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;

  constructor(ratePerSecond: number, hooks: PacerHooks = {}) {
    this.hooks = hooks;
    this.now = hooks.now ?? Date.now;
    this.bucket = new TokenBucket(ratePerSecond, connectBurst(ratePerSecond), this.now());
  }

  get ratePerSecond(): number { return this.bucket.ratePerSecond; }
  get burst(): number { return this.bucket.burst; }
  get waiting(): number { return this.queue.length; }

  /**
   * Resolves when this caller may open a connection; rejects with ConnectStoppedError if `signal`
   * aborts first. `onQueued` is called when the caller has to wait.
   */
  acquire(signal?: AbortSignal, onQueued?: () => void): Promise<void> {
    if (signal?.aborted) return Promise.reject(new ConnectStoppedError());
    // Nobody ahead and a token saved up: no queueing, no timer.
    if (this.queue.length === 0 && this.bucket.take(this.now()) === 0) return Promise.resolve();
    onQueued?.();
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        resolve: () => { signal?.removeEventListener('abort', onAbort); resolve(); },
        reject,
      };
      const onAbort = () => {
        const at = this.queue.indexOf(waiter);
        if (at >= 0) this.queue.splice(at, 1);
        this.changed();
        reject(new ConnectStoppedError());
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(waiter);
      this.changed();
      this.pump();
    });
  }

  /** Ends the timer; whoever still waits is told the producer stops. */
  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const waiter of this.queue.splice(0)) waiter.reject(new ConnectStoppedError());
    this.changed();
  }

  private changed(): void {
    this.hooks.onWaiting?.(this.queue.length);
  }

  private pump(): void {
    if (this.timer) return;
    while (this.queue.length > 0) {
      const wait = this.bucket.take(this.now());
      if (wait > 0) {
        this.timer = setTimeout(() => { this.timer = undefined; this.pump(); }, wait);
        return;
      }
      this.queue.shift()!.resolve();
      this.changed();
    }
  }
}
