// Crash points for the kill -9 tests (FAULT_INJECTION=after-fetch[:N] | after-blob-writes[:N] |
// after-blobs[:N] | after-append[:N] | after-change-fetch[:N] | after-change-append[:N];
// after-blob-writes: a batch's blobs are written, not yet made durable (the barrier); after-blobs:
// they are durable, its entries not appended; after-change-fetch: changes read from IMAP, not appended).
// The process ends with SIGKILL, exactly like `kill -9`: no cleanup, no flush, no logout. Unset,
// every hit is a no-op.

export type FaultPoint = 'after-fetch' | 'after-blob-writes' | 'after-blobs' | 'after-append' | 'after-change-fetch' | 'after-change-append';

export interface FaultInjector { hit(point: FaultPoint): void }

export function createFaultInjector(spec: string | undefined): FaultInjector {
  if (!spec) return { hit() {} };
  const [point, nth] = spec.split(':');
  const target = nth ? Number(nth) : 1;
  let hits = 0;
  return {
    hit(at) {
      if (at !== point) return;
      hits += 1;
      if (hits === target) process.kill(process.pid, 'SIGKILL');
    },
  };
}
