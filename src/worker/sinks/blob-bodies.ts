// The blob store on the worker's side: a wrapper around the sink that reads back, before a batch
// goes out, what its emails keep in the store and the sink should get. By default
// (SINK_BODIES=whole) that is text and html the producer cut to INLINE_BODY_BYTES: they are read
// back from textRef / htmlRef and cut to MAX_BODY_BYTES, so every sink gets the payload it got
// without a store while Redis holds only the start. The webhook's attachment links and inline
// content are added the same way (attachments-webhook.ts). An email that needs none of it passes
// as it came, its JSON never parsed.
//
// A store that does not answer holds the whole batch back, every email as `retry` of kind
// `blob-unavailable` (waitOut), and every later batch too until the store answers again: the
// worker then waits for the store as for a sink that is down, through the sink's breaker,
// charging no email an attempt. Holding only the emails that needed the store would make them a
// minority of their batch (and their batches a minority), charged each try, and dead-lettered
// after MAX_ATTEMPTS by an outage. A ref the store answers it does not hold is the email's own fault: a
// `permanent` outcome naming the ref (DLQ; `mailstream blob check` lists such refs).
import { createHash } from 'node:crypto';
import { refOf } from '../../core/blobs/blob-ref.ts';
import { describeStore, type BlobStore } from '../../core/blobs/blob-store.ts';
import type { EmailEntry } from '../../core/entry.ts';
import { BlobNotFoundError, BlobStoreUnavailableError, isPermanent } from '../../core/errors.ts';
import { readTextStart } from './blob-reads.ts';
import { InFlightLimit, NOT_ATTEMPTED } from './in-flight.ts';
import type { Delivery, Outcome, Sink } from './types.ts';

/** One change to an email before its sink sees it. */
export interface EmailRewrite {
  /** Whether an email may need it, from its JSON text alone (a wrong yes costs only a parse). */
  wants(email: string): boolean;
  /** Changes the parsed email in place; rejects as blob-reads.ts does. */
  apply(email: EmailEntry, store: BlobStore | null, signal: AbortSignal): Promise<void>;
}

export interface BlobWrapperOptions {
  /** Emails reading the store at once, across every call (WORKER_CONCURRENCY). */
  concurrency: number;
}

/** The ref of empty content: the store is asked about it, a read that needs no write permission. */
const PROBE_REF = refOf(createHash('sha256').digest('hex'));
const STORE_CHECK_TIMEOUT_MS = 1_000;

/**
 * Text and html read back whole (up to `maxBodyBytes`) where the entry holds only their start.
 * The refs stay in the email; the truncation flags then say whether MAX_BODY_BYTES cut them.
 */
export function wholeBodies(maxBodyBytes: number): EmailRewrite {
  return {
    // Only a key can hold `Ref":"` unescaped (inside a JSON string the quotes would be `\"`), and
    // only textRef and htmlRef end so: one pass over the email, on every email of every batch.
    wants: (email) => email.includes('Ref":"'),
    async apply(email, store, signal) {
      const [text, html] = await Promise.all([
        typeof email.textRef === 'string' ? readTextStart(store, email.textRef, maxBodyBytes, signal) : undefined,
        typeof email.htmlRef === 'string' ? readTextStart(store, email.htmlRef, maxBodyBytes, signal) : undefined,
      ]);
      if (text) { email.text = text.value; email.textTruncated = text.truncated; }
      if (html) { email.html = html.value; email.htmlTruncated = html.truncated; }
    },
  };
}

type Prepared =
  | { delivery: Delivery }
  | { outcome: Outcome }
  /** The store did not answer for this email: the reason. */
  | { storeDown: string };

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The sink, fed emails rewritten by `rewrites` (in order) from `store`. Owns the store: checks it
 * for /ready and closes it after the sink. With no rewrites it only does that (a module sink
 * reading blobs itself through ctx.blobs).
 */
export function withBlobs(sink: Sink, store: BlobStore | null, rewrites: readonly EmailRewrite[], options: BlobWrapperOptions): Sink {
  const reads = new InFlightLimit(options.concurrency);
  /**
   * Why the store last failed a batch, until it answers again: /ready says so, and later batches
   * wait (stillDown). Kept rather than asked anew for /ready: a stat alone passes a file store
   * whose directory is gone (no object answers "none", not "down").
   */
  let storeDown: string | undefined;
  let closing: Promise<void> | undefined;

  async function prepare(delivery: Delivery, signal: AbortSignal): Promise<Prepared> {
    const wanted = rewrites.filter((r) => r.wants(delivery.email));
    if (wanted.length === 0) return { delivery };
    let email: EmailEntry;
    try {
      email = JSON.parse(delivery.email) as EmailEntry;
    } catch {
      return { delivery }; // the sink refuses what is not JSON, as it always has
    }
    if (!(await reads.acquire(signal))) return { outcome: NOT_ATTEMPTED };
    try {
      for (const rewrite of wanted) await rewrite.apply(email, store, signal);
      return { delivery: { ...delivery, email: JSON.stringify(email) } };
    } catch (err) {
      if (signal.aborted) return { outcome: NOT_ATTEMPTED };
      if (err instanceof BlobNotFoundError) {
        return { outcome: { status: 'permanent', reason: `${err.message}: the email refers to a blob the store does not hold (collected, or not restored); see runbooks/blob-store.md` } };
      }
      if (isPermanent(err)) return { outcome: { status: 'permanent', reason: messageOf(err) } };
      if (err instanceof BlobStoreUnavailableError) return { storeDown: messageOf(err) };
      // Anything else is this email's (a malformed entry): it alone is retried, never the store waited for.
      return { outcome: { status: 'retry', kind: 'sink-failed', reason: `reading the email's blobs failed: ${messageOf(err)}` } };
    } finally {
      reads.release();
    }
  }

  /** Why the store does not answer a read that needs no permission to write, or undefined when it does. */
  async function askStore(): Promise<string | undefined> {
    if (!store) return undefined;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error('no answer')), STORE_CHECK_TIMEOUT_MS); });
    try {
      await Promise.race([store.stat(PROBE_REF), timeout]);
      return undefined;
    } catch (err) {
      // The store's own errors name it already.
      return err instanceof BlobStoreUnavailableError ? err.message : `blob store ${describeStore(store)} does not answer: ${messageOf(err)}`;
    } finally {
      clearTimeout(timer);
    }
  }

  async function checkStore(): Promise<void> {
    const problem = storeDown ?? await askStore();
    if (problem) throw new Error(problem);
  }

  /**
   * Once a batch found the store down, every batch waits for it until the store answers again,
   * those that need nothing of it included: the breaker then sees the outage whole and opens,
   * rather than judging a mix of passing and failing batches while the failing ones are charged.
   */
  async function stillDown(): Promise<string | undefined> {
    if (!storeDown) return undefined;
    storeDown = store ? await askStore() : storeDown;
    return storeDown;
  }

  return {
    kind: sink.kind,
    async deliver(batch, signal) {
      const waiting = await stillDown();
      if (waiting) return batch.map((): Outcome => ({ status: 'retry', kind: 'blob-unavailable', reason: `held while the blob store does not answer: ${waiting}` }));
      const prepared = await Promise.all(batch.map((delivery) => prepare(delivery, signal)));
      const down = prepared.find((p): p is { storeDown: string } => 'storeDown' in p);
      if (down) {
        storeDown = down.storeDown;
        return prepared.map((p): Outcome => {
          if ('outcome' in p) return p.outcome;
          const reason = 'storeDown' in p ? p.storeDown : `held with its batch: ${down.storeDown}`;
          return { status: 'retry', kind: 'blob-unavailable', reason };
        });
      }
      const outcomes: Outcome[] = prepared.map((p) => ('outcome' in p ? p.outcome : NOT_ATTEMPTED));
      const sending: Delivery[] = [];
      const positions: number[] = [];
      prepared.forEach((p, i) => {
        if ('delivery' in p) { sending.push(p.delivery); positions.push(i); }
      });
      if (sending.length === 0) return outcomes;
      const answered = await sink.deliver(sending, signal);
      if (answered.length !== sending.length) throw new Error(`sink ${sink.kind} answered ${answered.length} outcomes for ${sending.length} emails`);
      positions.forEach((at, i) => { outcomes[at] = answered[i]!; });
      return outcomes;
    },
    async check() {
      const results = await Promise.allSettled([sink.check(), checkStore()]);
      const problems = results.flatMap((r) => (r.status === 'rejected' ? [messageOf(r.reason)] : []));
      if (problems.length > 0) throw new Error(problems.join('; '));
    },
    close() {
      closing ??= (async () => {
        try {
          await sink.close();
        } finally {
          await store?.close();
        }
      })();
      return closing;
    },
  };
}
