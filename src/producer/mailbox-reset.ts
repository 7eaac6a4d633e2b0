// `mailstream mailbox reset`: records the operator's request in the mailbox state; the runner
// answers it at its next check (settlePosition), so a running producer and a stopped one behave
// the same and the request survives restarts.
import { MailstreamError } from '../core/errors.ts';
import { accountKeys } from '../core/keys.ts';
import type { RedisClient } from '../core/redis.ts';

export async function requestMailboxReset(redis: RedisClient, prefix: string, account: string, mailbox: string, sinceMs: number): Promise<void> {
  const key = accountKeys(prefix, account).mailbox(mailbox);
  if (!(await redis.hexists(key, 'uidValidity'))) {
    throw new MailstreamError('ERR_UNKNOWN_MAILBOX', `mailbox ${mailbox} of ${account} has never been synced (nothing to reset); START_FROM decides where a new mailbox starts`);
  }
  await redis.hset(key, 'resetSince', String(sinceMs));
}
