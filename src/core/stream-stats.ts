// What the stream looks like from outside: length, each consumer group's lag and pending count,
// consumers, DLQ depth. Used by metrics, /status, `mailstream status` and producer backpressure.
import type { RedisClient } from './redis.ts';
import type { AccountKeys } from './keys.ts';

export interface ConsumerInfo { name: string; pending: number; idleMs: number; inactiveMs: number | null }

export interface GroupInfo {
  name: string;
  /** Entries not yet delivered to the group (XINFO GROUPS `lag`; null when Redis cannot tell). */
  lag: number | null;
  /** Delivered but not acknowledged. */
  pending: number;
  lastDeliveredId: string;
  entriesRead: number | null;
  consumers: ConsumerInfo[];
}

export interface StreamStats {
  stream: string;
  length: number;
  firstId: string | null;
  lastId: string | null;
  groups: GroupInfo[];
  dlqLength: number;
}

/** XINFO replies are flat [k1, v1, k2, v2, ...] arrays. */
export function pairs(reply: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const list = reply as unknown[];
  for (let i = 0; i + 1 < list.length; i += 2) out[String(list[i])] = list[i + 1];
  return out;
}

export async function readStreamStats(redis: RedisClient, keys: AccountKeys, options: { consumers?: boolean } = {}): Promise<StreamStats> {
  const [length, dlqLength] = await Promise.all([redis.xlen(keys.stream), redis.xlen(keys.dlq)]);
  if (length === 0 && !(await redis.exists(keys.stream))) {
    return { stream: keys.stream, length: 0, firstId: null, lastId: null, groups: [], dlqLength };
  }
  const info = pairs(await redis.xinfo('STREAM', keys.stream));
  const first = info['first-entry'] as [string, unknown] | null;
  const last = info['last-entry'] as [string, unknown] | null;
  const rawGroups = (await redis.xinfo('GROUPS', keys.stream)) as unknown[];
  const groups: GroupInfo[] = [];
  for (const raw of rawGroups) {
    const g = pairs(raw);
    const name = String(g.name);
    let consumers: ConsumerInfo[] = [];
    if (options.consumers) {
      const rawConsumers = (await redis.xinfo('CONSUMERS', keys.stream, name)) as unknown[];
      consumers = rawConsumers.map((c) => {
        const p = pairs(c);
        return {
          name: String(p.name),
          pending: Number(p.pending),
          idleMs: Number(p.idle),
          inactiveMs: p.inactive === undefined ? null : Number(p.inactive),
        };
      });
    }
    groups.push({
      name,
      lag: g.lag === null || g.lag === undefined ? null : Number(g.lag),
      pending: Number(g.pending),
      lastDeliveredId: String(g['last-delivered-id']),
      entriesRead: g['entries-read'] === null || g['entries-read'] === undefined ? null : Number(g['entries-read']),
      consumers,
    });
  }
  return { stream: keys.stream, length, firstId: first?.[0] ?? null, lastId: last?.[0] ?? null, groups, dlqLength };
}
