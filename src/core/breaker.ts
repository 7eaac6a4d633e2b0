// Circuit breakers (opossum) with their state exported as a metric and offered to /ready. A
// breaker wraps one dependency (IMAP, Redis, a sink); while it is open, callers wait instead of
// hammering a dependency that is down.
import { EventEmitter } from 'node:events';
import CircuitBreaker from 'opossum';
import type { Logger } from './logger.ts';
import type { Metrics } from './metrics.ts';

export interface BreakerOptions {
  /** Failure ratio in the rolling window that opens the breaker. @default 50 (%) */
  errorThresholdPercentage?: number;
  /** Calls in the window before the ratio counts. @default 5 */
  volumeThreshold?: number;
  /** Time open before a trial call. @default 10_000 */
  resetTimeoutMs?: number;
  /** Per-call timeout; false for none (callers set their own). @default false */
  timeoutMs?: number | false;
  /** Errors that say nothing about the dependency's health (e.g. a permanent 4xx) do not count. */
  isNeutral?: (err: unknown) => boolean;
  /**
   * Open after this many failures in a row, however long they took: on a busy host slow calls may
   * never fit `volumeThreshold` of them in the rolling window, and the breaker would stay closed
   * through an outage. @default none (the window alone decides)
   */
  openAfterFailuresInARow?: number;
}

export const BREAKER_STATE = { closed: 0, halfOpen: 1, open: 2 } as const;

const ROLLING_WINDOW_MS = 10_000;
const ROLLING_BUCKETS = 10;
let rotation: EventEmitter | undefined;

/**
 * One timer turns the rolling windows of every breaker in the process. By default each opossum
 * breaker runs two intervals of its own (a bucket rotation and a stats snapshot we never read):
 * a producer with 1,000 accounts has two breakers each, 4,000 timer callbacks a second, most of
 * its idle CPU.
 */
function sharedRotation(): EventEmitter {
  if (!rotation) {
    const emitter = new EventEmitter();
    emitter.setMaxListeners(0);
    setInterval(() => emitter.emit('rotate'), ROLLING_WINDOW_MS / ROLLING_BUCKETS).unref();
    rotation = emitter;
  }
  return rotation;
}

export type Breaker<A extends unknown[], R> = CircuitBreaker<A, R>;

export function createBreaker<A extends unknown[], R>(
  name: string,
  action: (...args: A) => Promise<R>,
  deps: { metrics?: Metrics; logger?: Logger; /** The account it serves; `*` for one shared by all. */ account: string },
  options: BreakerOptions = {},
): Breaker<A, R> {
  const breaker = new CircuitBreaker<A, R>(action, {
    name,
    errorThresholdPercentage: options.errorThresholdPercentage ?? 50,
    volumeThreshold: options.volumeThreshold ?? 5,
    resetTimeout: options.resetTimeoutMs ?? 10_000,
    timeout: options.timeoutMs ?? false,
    rollingCountTimeout: ROLLING_WINDOW_MS,
    rollingCountBuckets: ROLLING_BUCKETS,
    rotateBucketController: sharedRotation(),
    enableSnapshots: false,
    errorFilter: options.isNeutral ? (err: unknown) => options.isNeutral!(err) : undefined,
  });
  // Each account's breakers are their own series: without the label the last account to change
  // state would overwrite the others'.
  const labels = { account: deps.account, breaker: name };
  const gauge = deps.metrics?.breakerState;
  gauge?.set(labels, BREAKER_STATE.closed);
  deps.metrics?.breakerOpens.inc(labels, 0);
  breaker.on('open', () => {
    gauge?.set(labels, BREAKER_STATE.open);
    deps.metrics?.breakerOpens.inc(labels);
    deps.logger?.warn(labels, 'circuit breaker opened');
  });
  breaker.on('halfOpen', () => gauge?.set(labels, BREAKER_STATE.halfOpen));
  const inARow = options.openAfterFailuresInARow;
  if (inARow) {
    let failures = 0;
    breaker.on('success', () => { failures = 0; });
    breaker.on('failure', () => {
      failures += 1;
      if (failures >= inARow && breaker.closed) breaker.open();
    });
  }
  breaker.on('close', () => {
    gauge?.set(labels, BREAKER_STATE.closed);
    deps.logger?.info(labels, 'circuit breaker closed');
  });
  return breaker;
}

export function breakerStateName(breaker: { opened: boolean; halfOpen: boolean }): 'open' | 'half-open' | 'closed' {
  return breaker.opened ? 'open' : breaker.halfOpen ? 'half-open' : 'closed';
}
