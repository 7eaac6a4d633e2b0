// Counts what sinks wrote to JSONL files: distinct emails, duplicates, and for each email the time
// from the producer's append (`ingestedAt`) to the moment the line was seen. The demo, the load
// test and the bench judge a run by it.
import { tailJsonl, type JsonlTail } from './jsonl-tail.ts';

export interface DeliveryTracker {
  /** Reads whatever the sinks wrote since the last call. */
  poll(): void;
  distinct(): number;
  duplicates(): number;
  /** Seconds from append to sink, one per distinct email. */
  appendToSinkSeconds(): number[];
  /** Time of the most recent first sighting (ms), 0 before any. */
  lastSeenAt(): number;
  close(): void;
}

/** The identity of a delivered email: its idempotency key, as the entry carries it. */
export function deliveredKey(line: Record<string, unknown>): string | undefined {
  if (typeof line.key === 'string') return line.key;
  const email = line.email as Record<string, unknown> | undefined;
  if (email && typeof email.key === 'string') return email.key;
  return undefined;
}

export function trackDeliveries(files: string[], intervalMs = 20): DeliveryTracker {
  const seen = new Set<string>();
  const latencies: number[] = [];
  let duplicates = 0;
  let lastSeenAt = 0;
  const onLine = (line: Record<string, unknown>, seenAtMs: number) => {
    const key = deliveredKey(line);
    if (key === undefined) return;
    if (seen.has(key)) { duplicates += 1; return; }
    seen.add(key);
    lastSeenAt = seenAtMs;
    const email = (line.email as Record<string, unknown> | undefined) ?? line;
    const ingestedAt = typeof email.ingestedAt === 'string' ? Date.parse(email.ingestedAt) : Number.NaN;
    if (Number.isFinite(ingestedAt)) latencies.push(Math.max(0, seenAtMs - ingestedAt) / 1000);
  };
  const tails: JsonlTail[] = files.map((file) => tailJsonl(file, { intervalMs, onLine }));
  return {
    poll: () => tails.forEach((t) => t.poll()),
    distinct: () => seen.size,
    duplicates: () => duplicates,
    appendToSinkSeconds: () => latencies,
    lastSeenAt: () => lastSeenAt,
    close: () => tails.forEach((t) => t.close()),
  };
}
