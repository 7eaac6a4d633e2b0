// Every Redis key mailstream uses is built here and nowhere else. All keys of one account share
// the hash tag `{account}`, so every script and transaction on an account stays in one Redis
// Cluster slot.

export interface AccountKeys {
  account: string;
  /** The stream of email entries (the contract's `<prefix>:{<account>}:emails`). */
  stream: string;
  /** Dead letters (the contract's `<prefix>:{<account>}:dlq`). */
  dlq: string;
  /** Hash per mailbox: uidValidity, lastUid, lastInternalDate, lastPollAt, ... */
  mailbox(mailbox: string): string;
  /** Sorted set of idempotency keys the producer appended, scored by ingestion time (ms). */
  ingested: string;
  /**
   * Hash per mailbox of UID -> what the producer last saw of that message (its key, flags, Gmail
   * labels), kept only with TRACK_CHANGES: how a vanished UID or a flag change is named. It holds
   * one field per message in the mailbox; a deleted message's field goes with its event.
   */
  uids(mailbox: string): string;
  /** The worker state of one consumer group on this stream (see GroupKeys). */
  group(name: string): GroupKeys;
  /** Lease on a mailbox held by one producer (scale-out). */
  lease(mailbox: string): string;
  /** Counter handing out fencing tokens for leases. */
  fence: string;
  /** Hash of mailbox -> status JSON written by the producer (for `mailstream status`). */
  mailboxStatus: string;
  /** The shared stream announcing new entries (GlobalKeys.signals); in another slot than the account's keys. */
  signals: string;
}

/**
 * What the workers of one consumer group keep. Each group is its own sink (a webhook group and a
 * PostgreSQL group may read one stream), so what one delivered or failed says nothing about the
 * other: markers, retries and failure records are the group's.
 */
export interface GroupKeys {
  group: string;
  /** Marker that the group delivered a key (string with a TTL; a short name, there are millions). */
  delivered(idempotencyKey: string): string;
  /** Sorted set of stream IDs waiting for a retry, scored by due time (ms). */
  retries: string;
  /** Hash of stream ID -> JSON failure record (first/last failure, last error). */
  failures: string;
  /** Hash of stream ID -> times a recovering worker began it with no outcome yet (crash guard). */
  handouts: string;
}

export interface GlobalKeys {
  /** Set of every account that has a stream (for `status`, backup, workers of many accounts). */
  accounts: string;
  /** Hash of process id -> heartbeat JSON of live producers and workers. */
  processes: string;
  /** Sorted set of producer ids scored by registration expiry (ms): who shares the leases. */
  producers: string;
  /**
   * Stream of `account` names, one entry per append that added entries (capped by MAXLEN ~):
   * workers block on it instead of on every account's stream. A lost entry only delays.
   */
  signals: string;
}

/** `{` and `}` inside an account would break the hash tag; they never occur in an address. */
function tag(account: string): string {
  if (/[{}]/.test(account)) throw new Error(`account name may not contain { or }: ${account}`);
  return `{${account}}`;
}

export function accountKeys(prefix: string, account: string): AccountKeys {
  const base = `${prefix}:${tag(account)}`;
  return {
    account,
    stream: `${base}:emails`,
    dlq: `${base}:dlq`,
    mailbox: (mailbox) => `${base}:mailbox:${mailbox}`,
    ingested: `${base}:ingested`,
    uids: (mailbox) => `${base}:uids:${mailbox}`,
    group: (name) => {
      const g = `${base}:group:${name}`;
      return { group: name, delivered: (key) => `${g}:d:${key}`, retries: `${g}:retries`, failures: `${g}:failures`, handouts: `${g}:handouts` };
    },
    lease: (mailbox) => `${base}:lease:${mailbox}`,
    fence: `${base}:fence`,
    mailboxStatus: `${base}:mailbox-status`,
    signals: globalKeys(prefix).signals,
  };
}

export function globalKeys(prefix: string): GlobalKeys {
  return { accounts: `${prefix}:accounts`, processes: `${prefix}:processes`, producers: `${prefix}:producers`, signals: `${prefix}:signals` };
}

/** The account part of a stream key, or undefined if it is not one of ours. */
export function accountOfStream(prefix: string, streamKey: string): string | undefined {
  const match = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\{([^}]+)\\}:emails$`).exec(streamKey);
  return match?.[1];
}
