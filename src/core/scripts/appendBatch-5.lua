--[[
  Appends one batch of a mailbox to the stream and advances the mailbox state, atomically, so a
  crash before or after this script leaves either nothing or everything of the batch applied.
  With TRACK_CHANGES it also records what it saw of each message (KEYS[5]), and starts the
  mailbox's MODSEQ cursor with its first batch, so no change after the fetch can be missed.

  KEYS[1] stream                 the account's email stream
  KEYS[2] mailbox state hash     uidValidity, lastUid, lastInternalDate, highestModseq
  KEYS[3] ingested sorted set    idempotency keys already appended, scored by ingestion time (ms)
  KEYS[4] lease key              the mailbox lease (scale-out); only read
  KEYS[5] uid hash               UID -> what was seen of the message (TRACK_CHANGES only)

  ARGV[1] uidValidity the batch was fetched under
  ARGV[2] fencing token; '' skips the lease check (single producer)
  ARGV[3] lastUid to record (the highest UID of the batch)
  ARGV[4] highest internal date of the batch (ms), 0 if none
  ARGV[5] now (ms): score of the keys added
  ARGV[6] retention cutoff (ms): ingested keys scored below it are forgotten
  ARGV[7] change tracking: '' off, 'track' record each UID, 'moves' also announce a known key at
          a UID this mailbox did not have it at (message.moved)
  ARGV[8] HIGHESTMODSEQ when the mailbox was opened, before the fetch; '' without CONDSTORE.
          Becomes the mailbox's highestModseq only if it has none yet.
  ARGV[9] number of entries N, then N groups of 6 (in UID order):
          idempotency key, email JSON, UID, UID record ('' when not tracking),
          message.moved key, message.moved JSON ('' unless ARGV[7] is 'moves')

  Returns {code, appended, skipped, moved}: code 0 ok, 1 stale uidValidity, 2 lease lost;
  appended counts message.new entries, moved the message.moved ones. Scores are ingestion times, not internal dates: old mail read
  with START_FROM=all must stay remembered for the retention period, or a re-sync would append it
  again.
]]
local stream, state, ingested, lease, uids = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local uidValidity, token, tracking = ARGV[1], ARGV[2], ARGV[7]

if token ~= '' and redis.call('GET', lease) ~= token then
  return {2, 0, 0, 0}
end
local known = redis.call('HGET', state, 'uidValidity')
if known and known ~= uidValidity then
  return {1, 0, 0, 0}
end

redis.call('ZREMRANGEBYSCORE', ingested, '-inf', '(' .. ARGV[6])

local now = ARGV[5]
local count = tonumber(ARGV[9])
local appended, skipped, moved = 0, 0, 0
for i = 0, count - 1 do
  local at = 10 + i * 6
  local key, uid, record = ARGV[at], ARGV[at + 2], ARGV[at + 3]
  if redis.call('ZADD', ingested, 'NX', now, key) == 1 then
    redis.call('XADD', stream, '*', 'key', key, 'email', ARGV[at + 1], 'type', 'message.new')
    appended = appended + 1
  elseif tracking == 'moves' and redis.call('HEXISTS', uids, uid) == 0
      and redis.call('ZADD', ingested, 'NX', now, ARGV[at + 4]) == 1 then
    -- Known mail at a UID new to this mailbox; the same UID seen again (a re-sync) stays quiet.
    redis.call('XADD', stream, '*', 'key', ARGV[at + 4], 'email', ARGV[at + 5], 'type', 'message.moved')
    moved = moved + 1
  else
    skipped = skipped + 1
  end
  if tracking ~= '' then
    redis.call('HSET', uids, uid, record)
  end
end

local lastUid = tonumber(ARGV[3])
if lastUid > tonumber(redis.call('HGET', state, 'lastUid') or '0') then
  redis.call('HSET', state, 'lastUid', lastUid)
end
local internalDate = tonumber(ARGV[4])
if internalDate > tonumber(redis.call('HGET', state, 'lastInternalDate') or '0') then
  redis.call('HSET', state, 'lastInternalDate', internalDate)
end
if tracking ~= '' and ARGV[8] ~= '' then
  redis.call('HSETNX', state, 'highestModseq', ARGV[8])
end
redis.call('HSET', state, 'uidValidity', uidValidity)
return {0, appended, skipped, moved}
