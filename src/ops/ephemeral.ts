// Keys that only describe processes alive right now (heartbeats, the producer registry, mailbox
// leases, the new-entry signals workers wake on). Backups leave them out: restored, they would
// show dead processes as registered, count them in the share-out of mailboxes, or hold a lease for
// a producer that no longer exists.
import { accountKeys, globalKeys } from '../core/keys.ts';

export function isEphemeralKey(prefix: string, key: string): boolean {
  const global = globalKeys(prefix);
  if (key === global.processes || key === global.producers || key === global.signals) return true;
  const open = `${prefix}:{`;
  if (!key.startsWith(open)) return false;
  const close = key.indexOf('}', open.length);
  return close > 0 && key.startsWith(accountKeys(prefix, key.slice(open.length, close)).lease(''));
}
