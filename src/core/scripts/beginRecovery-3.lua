-- Entries a worker left behind (our own after a restart, or claimed orphans of a dead one) are
-- counted as they are taken up again: the count says how many times a worker took the entry up
-- without reaching an outcome, so an email that kills workers is found and goes alone. Entries
-- waiting for a scheduled retry are not left behind: they are skipped and not counted.
-- In mode `batch` only entries never taken up before are counted now (they go together in one
-- batch); the others are counted one by one in mode `alone`, right before each goes, so those
-- still queued behind an email that kills the worker are not charged for its deaths.
-- KEYS[1] handouts hash, KEYS[2] failures hash, KEYS[3] retries sorted set
-- ARGV[1] `batch` or `alone`, then entry ids
-- Returns one {taken, record} per id: taken -1 for an entry waiting for its retry (skip it), else
-- how many times it was taken up before this call; the failure record JSON or false.
local result = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('ZSCORE', KEYS[3], id) then
    result[i - 1] = { -1, false }
  else
    local taken = tonumber(redis.call('HGET', KEYS[1], id) or '0')
    if ARGV[1] == 'alone' or taken == 0 then redis.call('HINCRBY', KEYS[1], id, 1) end
    result[i - 1] = { taken, redis.call('HGET', KEYS[2], id) }
  end
end
return result
