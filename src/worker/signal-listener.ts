// The worker's one blocking read: XREAD BLOCK on the shared signal stream (src/core/signals.ts),
// from the last id it saw, so a signal written between two reads is not missed. A plain XREAD, not
// a group: every worker wants every signal (each names an account some worker should look at; the
// consumer group of the account stream decides which worker gets the entries). One key, so it
// works on Redis Cluster, where a single XREADGROUP could not span the account streams' slots.
import { Backoff, sleep } from '../core/backoff.ts';
import type { Logger } from '../core/logger.ts';
import type { RedisClient } from '../core/redis.ts';
import { SIGNAL_ACCOUNT_FIELD } from '../core/signals.ts';

export interface SignalListenerOptions {
  /** A connection of its own: the read holds it for up to `blockMs`. */
  blocking: RedisClient;
  key: string;
  /** READ_BLOCK_MS: bounds how long a dropped connection goes unnoticed. */
  blockMs: number;
  /** Called once per signal entry, in order; accounts this worker does not serve are its to ignore. */
  onSignal(account: string): void;
  /** Called once, when the read position is known: what was appended before it, a sweep must find. */
  onListening(): void;
  logger: Logger;
  stopping: AbortSignal;
}

/** Signals taken per read; a worker this far behind simply reads again at once. */
const SIGNALS_PER_READ = 1_000;

type ReadReply = Array<[stream: string, entries: Array<[id: string, fields: string[]]>]> | null;

/** Reads signals until `stopping` aborts (disconnect the connection to cut a blocked read). */
export async function listenForSignals(o: SignalListenerOptions): Promise<void> {
  const failures = new Backoff({ baseMs: 100, maxMs: 5_000 });
  let from: string | undefined;
  while (!o.stopping.aborted) {
    try {
      // Where the stream ends now: what came before, the first sweep (run from onListening) finds.
      // An empty or missing stream starts at 0-0.
      if (from === undefined) {
        from = (await o.blocking.xrevrange(o.key, '+', '-', 'COUNT', 1))[0]?.[0] ?? '0-0';
        o.onListening();
      }
      const reply = (await o.blocking.xread('COUNT', SIGNALS_PER_READ, 'BLOCK', o.blockMs, 'STREAMS', o.key, from)) as ReadReply;
      for (const [id, fields] of reply?.[0]?.[1] ?? []) {
        from = id;
        const at = fields.indexOf(SIGNAL_ACCOUNT_FIELD);
        if (at >= 0 && at % 2 === 0 && fields[at + 1] !== undefined) o.onSignal(fields[at + 1]!);
      }
      failures.reset();
    } catch (err) {
      if (o.stopping.aborted) break;
      const delay = failures.next();
      o.logger.warn({ err, retryInMs: delay }, 'reading the signal stream failed; retrying (the sweep still finds new entries)');
      await sleep(delay, o.stopping);
    }
  }
}
