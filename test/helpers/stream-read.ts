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
  // `labels` lists the pairs a series must have (`mailbox="INBOX",kind="auth"`); others, such as
  // `account`, may be there too. Several matching series are summed.
  const wanted = labels ? labels.split(/,(?=\w+=")/) : [];
  let total = NaN;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = m[2] ? m[2].split(/,(?=\w+=")/) : [];
    if (wanted.every((pair) => have.includes(pair))) total = (Number.isNaN(total) ? 0 : total) + Number(m[3]);
  }
  return total;
}
