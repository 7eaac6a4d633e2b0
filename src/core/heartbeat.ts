// Live producers and workers announce themselves in one Redis hash (`<prefix>:processes`), so
// `mailstream status` can list them with their state and health URL. An entry whose heartbeat is
// older than three intervals belongs to a process that died.
import { hostname } from 'node:os';
import type { Logger } from './logger.ts';
import type { RedisClient } from './redis.ts';

export interface ProcessRecord {
  id: string;
  role: string;
  pid: number;
  host: string;
  startedAt: string;
  heartbeatAt: string;
  intervalMs: number;
  httpUrl?: string;
  [detail: string]: unknown;
}

export interface Heartbeat { id: string; stop(): Promise<void> }

export function startHeartbeat(options: {
  redis: RedisClient;
  key: string;
  id: string;
  role: string;
  intervalMs?: number;
  logger?: Logger;
  /** Extra details refreshed on each beat (breakers, mailboxes, consumer name ...). */
  details?: () => Record<string, unknown>;
}): Heartbeat {
  const intervalMs = options.intervalMs ?? 10_000;
  const startedAt = new Date().toISOString();
  const beat = async () => {
    const record: ProcessRecord = {
      id: options.id, role: options.role, pid: process.pid, host: hostname(), startedAt,
      heartbeatAt: new Date().toISOString(), intervalMs, ...options.details?.(),
    };
    try {
      await options.redis.hset(options.key, options.id, JSON.stringify(record));
    } catch (err) {
      options.logger?.debug({ err }, 'heartbeat not written');
    }
  };
  void beat();
  const timer = setInterval(() => void beat(), intervalMs);
  timer.unref();
  return {
    id: options.id,
    async stop() {
      clearInterval(timer);
      await options.redis.hdel(options.key, options.id).catch(() => undefined);
    },
  };
}

export function isAlive(record: ProcessRecord, now = Date.now()): boolean {
  return now - Date.parse(record.heartbeatAt) < 3 * record.intervalMs;
}
