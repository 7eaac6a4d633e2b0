--[[
  Appends what changed in a mailbox since the last look (message.updated, message.deleted) and
  moves the change cursor, atomically: a crash leaves either the events and the new cursor, or
  neither, and the next look finds the same changes again. Each event is appended once: its key
  goes into the ingested set like an email's.

  KEYS[1] stream                 the account's email stream
  KEYS[2] mailbox state hash     uidValidity, highestModseq (CONDSTORE), scanSeq (scans)
  KEYS[3] ingested sorted set    idempotency keys already appended, scored by ingestion time (ms)
  KEYS[4] lease key              the mailbox lease (scale-out); only read
  KEYS[5] uid hash               UID -> what was seen of the message

  ARGV[1] uidValidity the changes were read under
  ARGV[2] fencing token; '' skips the lease check (single producer)
  ARGV[3] cursor field: 'highestModseq' or 'scanSeq'
  ARGV[4] the cursor the changes were read from ('' for none yet); anything else there now means
          this batch was applied already (a command sent again) or is stale: nothing is done
  ARGV[5] the new cursor
  ARGV[6] now (ms): score of the keys added
  ARGV[7] number of changes N, then N groups of 5 (in the order seen):
          UID, its new record ('' deletes it), event key ('' records without an event),
          event type, event JSON

  Returns {code, appended, skipped}: code 0 ok, 1 stale uidValidity, 2 lease lost, 3 cursor moved.
]]
local stream, state, ingested, lease, uids = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local uidValidity, token, field = ARGV[1], ARGV[2], ARGV[3]

if token ~= '' and redis.call('GET', lease) ~= token then
  return {2, 0, 0}
end
if redis.call('HGET', state, 'uidValidity') ~= uidValidity then
  return {1, 0, 0}
end
if (redis.call('HGET', state, field) or '') ~= ARGV[4] then
  return {3, 0, 0}
end

local now = ARGV[6]
local count = tonumber(ARGV[7])
local appended, skipped = 0, 0
for i = 0, count - 1 do
  local at = 8 + i * 5
  local uid, record, key = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  if key ~= '' then
    if redis.call('ZADD', ingested, 'NX', now, key) == 1 then
      redis.call('XADD', stream, '*', 'key', key, 'email', ARGV[at + 4], 'type', ARGV[at + 3])
      appended = appended + 1
    else
      skipped = skipped + 1
    end
  end
  if record == '' then
    redis.call('HDEL', uids, uid)
  else
    redis.call('HSET', uids, uid, record)
  end
end
redis.call('HSET', state, field, ARGV[5])
return {0, appended, skipped}
