// Backoff schedules as pure functions: time and randomness come in as arguments so the
// schedule is unit-tested exactly.

export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
  /** 0 = none, 1 = full jitter (a uniform pick in [0, delay]). Default 0.5: in [delay/2, delay]. */
  jitter?: number;
}

/** Delay before try number `attempt` (1 = the first retry): base * 2^(attempt-1), capped, jittered. */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const exponent = Math.max(0, attempt - 1);
  const raw = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(exponent, 52));
  const jitter = policy.jitter ?? 0.5;
  return Math.round(raw * (1 - jitter * random()));
}

/** Counts consecutive failures for a reconnect loop and hands out the next delay. */
export class Backoff {
  private failures = 0;
  private readonly policy: BackoffPolicy;
  private readonly random: () => number;
  constructor(policy: BackoffPolicy, random: () => number = Math.random) {
    this.policy = policy;
    this.random = random;
  }

  next(): number {
    this.failures += 1;
    return backoffDelay(this.failures, this.policy, this.random);
  }

  reset(): void { this.failures = 0; }

  get attempts(): number { return this.failures; }
}

/** A sleep that an AbortSignal ends early (resolves, never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() { clearTimeout(timer); signal?.removeEventListener('abort', done); resolve(); }
    signal?.addEventListener('abort', done, { once: true });
  });
}
