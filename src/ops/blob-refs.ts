// Every blob ref the stream and the dead letters of every account still hold: what `blob gc` must
// keep. Entries are read in pages with XRANGE (never the whole stream at once) and searched as
// text, so a ref counts wherever it sits in an entry or a dead letter's fields.
import { refsIn } from '../core/blobs/blob-ref.ts';
import { accountKeys } from '../core/keys.ts';
import type { RedisClient } from '../core/redis.ts';
import { listAccounts } from './status.ts';

const PAGE = 500;

export interface ReferencedBlobs {
  refs: Set<string>;
  accounts: string[];
  /** Stream and dead-letter entries read. */
  entries: number;
}

async function scanStream(redis: RedisClient, key: string, refs: Set<string>): Promise<number> {
  let start = '-';
  let read = 0;
  for (;;) {
    const page = await redis.xrange(key, start, '+', 'COUNT', PAGE);
    for (const [, fields] of page) {
      for (const value of fields) for (const ref of refsIn(value)) refs.add(ref);
    }
    read += page.length;
    if (page.length < PAGE) return read;
    start = `(${page[page.length - 1]![0]}`;
  }
}

export async function referencedBlobs(redis: RedisClient, prefix: string): Promise<ReferencedBlobs> {
  const accounts = await listAccounts(redis, prefix);
  const refs = new Set<string>();
  let entries = 0;
  for (const account of accounts) {
    const keys = accountKeys(prefix, account);
    entries += await scanStream(redis, keys.stream, refs);
    entries += await scanStream(redis, keys.dlq, refs);
  }
  return { refs, accounts, entries };
}
