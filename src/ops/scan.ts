// Finding keys by pattern. SCAN walks one server; on Redis Cluster every master holds a share of
// the keys, so each is walked. SCAN never blocks Redis the way KEYS does.
import { Cluster, type Redis } from 'ioredis';
import type { RedisClient } from '../core/redis.ts';

/** Glob metacharacters of Redis MATCH, escaped so a prefix or account is matched literally. */
export function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

export async function scanKeys(redis: RedisClient, pattern: string): Promise<string[]> {
  const nodes: Redis[] = redis instanceof Cluster ? redis.nodes('master') : [redis];
  const found = new Set<string>();
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      for (const key of keys) found.add(key);
      cursor = next;
    } while (cursor !== '0');
  }
  return [...found].sort();
}
