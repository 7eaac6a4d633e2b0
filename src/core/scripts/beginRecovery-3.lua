-- Entries a worker left behind (our own after a restart, or claimed orphans of a dead one) are
-- counted before they are delivered again: the count says how many times a worker took the
-- entry up without reaching an outcome, so an email that kills workers is found (and goes alone).
-- Entries waiting for a scheduled retry are not left behind: they are skipped and not counted.
-- KEYS[1] handouts hash, KEYS[2] failures hash, KEYS[3] retries sorted set
-- ARGV: entry ids
-- Returns one {handouts, failure record} per id: handouts 0 for an entry waiting for its retry
-- (not counted), else the count including this take-up; the record JSON or false.
local result = {}
for i, id in ipairs(ARGV) do
  if redis.call('ZSCORE', KEYS[3], id) then
    result[i] = { 0, false }
  else
    result[i] = { redis.call('HINCRBY', KEYS[1], id, 1), redis.call('HGET', KEYS[2], id) }
  end
end
return result
