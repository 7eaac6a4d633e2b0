--[[
  Appends one batch of a mailbox to the stream and advances the mailbox state, atomically, so a
  crash before or after this script leaves either nothing or everything of the batch applied.

  KEYS[1] stream                 the account's email stream
  KEYS[2] mailbox state hash     uidValidity, lastUid, lastInternalDate
  KEYS[3] ingested sorted set    idempotency keys already appended, scored by ingestion time (ms)
  KEYS[4] lease key              the mailbox lease (scale-out); only read

  ARGV[1] uidValidity the batch was fetched under
  ARGV[2] fencing token; '' skips the lease check (single producer)
  ARGV[3] lastUid to record (the highest UID of the batch)
  ARGV[4] highest internal date of the batch (ms), 0 if none
  ARGV[5] now (ms): score of the keys added
  ARGV[6] retention cutoff (ms): ingested keys scored below it are forgotten
  ARGV[7] number of entries N, then N pairs: idempotency key, email JSON (in UID order)

  Returns {code, appended, skipped}: code 0 ok, 1 stale uidValidity, 2 lease lost.
  Scores are ingestion times, not internal dates: old mail read with START_FROM=all must stay
  remembered for the retention period, or a re-sync would append it again.
]]
local stream, state, ingested, lease = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local uidValidity, token = ARGV[1], ARGV[2]

if token ~= '' and redis.call('GET', lease) ~= token then
  return {2, 0, 0}
end
local known = redis.call('HGET', state, 'uidValidity')
if known and known ~= uidValidity then
  return {1, 0, 0}
end

redis.call('ZREMRANGEBYSCORE', ingested, '-inf', '(' .. ARGV[6])

local now = ARGV[5]
local count = tonumber(ARGV[7])
local appended, skipped = 0, 0
for i = 0, count - 1 do
  local key = ARGV[8 + i * 2]
  if redis.call('ZADD', ingested, 'NX', now, key) == 1 then
    redis.call('XADD', stream, '*', 'key', key, 'email', ARGV[9 + i * 2])
    appended = appended + 1
  else
    skipped = skipped + 1
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
redis.call('HSET', state, 'uidValidity', uidValidity)
return {0, appended, skipped}
