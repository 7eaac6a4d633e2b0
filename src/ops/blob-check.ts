// `mailstream blob check`: every ref the streams and dead letters of every account hold must name
// a blob in the store. Run it after a restore (Redis and the store come from separate copies) or
// after moving the store; a ref that is missing means a reader of that entry will fail.
import type { BlobStore } from '../core/blobs/blob-store.ts';
import type { RedisClient } from '../core/redis.ts';
import { referencedBlobs } from './blob-refs.ts';

/** Stats in flight at once (S3 round trips). */
const PARALLEL = 16;

export interface BlobCheck {
  store: string;
  accounts: string[];
  entriesScanned: number;
  referenced: number;
  missing: string[];
}

export async function checkBlobs(store: BlobStore, redis: RedisClient, prefix: string): Promise<BlobCheck> {
  const { refs, accounts, entries } = await referencedBlobs(redis, prefix);
  const queue = [...refs];
  const missing: string[] = [];
  await Promise.all(Array.from({ length: PARALLEL }, async () => {
    for (let ref = queue.pop(); ref !== undefined; ref = queue.pop()) {
      if (!await store.stat(ref)) missing.push(ref);
    }
  }));
  return { store: store.location, accounts, entriesScanned: entries, referenced: refs.size, missing: missing.sort() };
}
