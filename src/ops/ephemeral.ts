// Keys that only describe processes alive right now (heartbeats, mailbox leases). Backups leave
// them out: restored, they would show dead processes as registered or hold a mailbox's lease for
// a producer that no longer exists until it expired.
import { accountKeys, globalKeys } from '../core/keys.ts';

export function isEphemeralKey(prefix: string, key: string): boolean {
  if (key === globalKeys(prefix).processes) return true;
  const open = `${prefix}:{`;
  if (!key.startsWith(open)) return false;
  const close = key.indexOf('}', open.length);
  return close > 0 && key.startsWith(accountKeys(prefix, key.slice(open.length, close)).lease(''));
}
