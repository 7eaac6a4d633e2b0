-- Hands the retries that are due to this consumer, with their failure records (the retry needs
-- the attempts so far; reading them here saves a round trip). Removing the id from the retries
-- set and claiming the entry happen together, so exactly one worker of the group performs each.
-- KEYS[1] stream, KEYS[2] retries sorted set, KEYS[3] failures hash
-- ARGV[1] consumer group, ARGV[2] consumer, ARGV[3] now (ms), ARGV[4] at most this many
-- Returns {entries, records, nextDueAt}: XCLAIM-shaped entries {id, fields} (fields false when
-- the entry was trimmed), the failure record JSON of each (false when none), and the due time of
-- the earliest retry still waiting (false when none), so the caller knows when to look again.
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
local claimed, records = {}, {}
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[2], id)
  local entries = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id)
  if entries[1] then
    claimed[#claimed + 1] = entries[1]
    records[#claimed] = redis.call('HGET', KEYS[3], id)
  end
end
local next = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return { claimed, records, next[2] or false }
