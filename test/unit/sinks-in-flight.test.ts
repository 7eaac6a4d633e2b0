// The in-flight cap the webhook and module sinks share across every call.
import { describe, expect, it } from 'vitest';
import { deliverEach, InFlightLimit, NOT_ATTEMPTED } from '../../src/worker/sinks/in-flight.ts';
import type { Delivery, Outcome } from '../../src/worker/sinks/types.ts';

const delivery = (n: number): Delivery => ({ id: `${n}-0`, key: `k${n}`, email: '{}', account: 'a', previousAttempts: 0 });

/** A deliverOne whose calls stay open until the test lets them finish. */
function gated() {
  const open: Array<() => void> = [];
  let inFlight = 0;
  let peak = 0;
  const started: string[] = [];
  const deliverOne = (d: Delivery) => new Promise<Outcome>((resolve) => {
    inFlight += 1;
    peak = Math.max(peak, inFlight);
    started.push(d.key);
    open.push(() => { inFlight -= 1; resolve({ status: 'delivered' }); });
  });
  const finishAll = async () => { while (open.length > 0) { open.splice(0).forEach((f) => f()); await new Promise((r) => setImmediate(r)); } };
  return { deliverOne, finishAll, started, peak: () => peak, waitingToFinish: () => open.length };
}

describe('InFlightLimit', () => {
  it('holds at most `limit` deliveries across concurrent calls, starting them in order', async () => {
    const limit = new InFlightLimit(3);
    const g = gated();
    const signal = new AbortController().signal;
    const first = deliverEach([1, 2, 3, 4].map(delivery), limit, signal, g.deliverOne);
    const second = deliverEach([5, 6].map(delivery), limit, signal, g.deliverOne);
    await new Promise((r) => setImmediate(r));
    expect(g.started).toEqual(['k1', 'k2', 'k3']);
    await g.finishAll();
    expect(await first).toHaveLength(4);
    expect(await second).toEqual([{ status: 'delivered' }, { status: 'delivered' }]);
    expect(g.peak()).toBe(3);
    expect(g.started).toEqual(['k1', 'k2', 'k3', 'k4', 'k5', 'k6']);
    expect(limit.inFlight).toBe(0);
  });

  it('an abort gives the emails still waiting for a slot NOT_ATTEMPTED and frees nothing twice', async () => {
    const limit = new InFlightLimit(1);
    const g = gated();
    const stop = new AbortController();
    const call = deliverEach([1, 2, 3].map(delivery), limit, stop.signal, g.deliverOne);
    await new Promise((r) => setImmediate(r));
    stop.abort();
    await g.finishAll();
    expect(await call).toEqual([{ status: 'delivered' }, NOT_ATTEMPTED, NOT_ATTEMPTED]);
    expect(limit.inFlight).toBe(0);
    const after = deliverEach([delivery(4)], limit, new AbortController().signal, async () => ({ status: 'delivered' }));
    expect(await after).toEqual([{ status: 'delivered' }]);
  });
});
