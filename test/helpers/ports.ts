// Free ports and waiting for a listener come from the product's local services; `eventually` is
// the tests' own bound on event-driven waits.
export { freePort, waitForPort } from '../../src/ops/local/ports.ts';

/** Polls `check` until it returns a truthy value (event-driven tests still need a bound). */
export async function eventually<T>(check: () => Promise<T> | T, { attempts = 600, intervalMs = 100, what = 'condition' } = {}): Promise<NonNullable<T>> {
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`gave up waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}
