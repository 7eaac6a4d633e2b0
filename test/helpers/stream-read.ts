// Reading the email stream back in tests: every entry parsed, the contract's fields checked.
import type { Redis } from 'ioredis';
import type { EmailEntry } from '../../src/core/entry.ts';

export async function readEntries(redis: Redis, stream: string): Promise<EmailEntry[]> {
  const raw = await redis.xrange(stream, '-', '+');
  return raw.map(([id, fields]) => {
    if (fields[0] !== 'key' || fields[2] !== 'email') throw new Error(`entry ${id} does not have the fields key, email`);
    const email = JSON.parse(fields[3]!) as EmailEntry;
    if (email.key !== fields[1]) throw new Error(`entry ${id}: key field and email.key differ`);
    return email;
  });
}

/** Value of one Prometheus sample in /metrics text, NaN when absent. */
export function metricValue(text: string, name: string, labels = ''): number {
  const prefix = labels ? `${name}{${labels}} ` : `${name} `;
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  return line ? Number(line.slice(prefix.length)) : NaN;
}
