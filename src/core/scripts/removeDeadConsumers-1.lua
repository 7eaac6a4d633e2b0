-- Removes consumers that have been idle past the threshold and hold nothing pending. The check
-- and the removal are one step: XGROUP DELCONSUMER throws a consumer's pending entries away, so
-- a consumer that still holds any is never removed.
-- KEYS[1] stream
-- ARGV[1] consumer group, ARGV[2] min idle ms, ARGV[3] this consumer (never removed)
-- Returns the names of the consumers removed.
local removed = {}
for _, raw in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local c = {}
  for i = 1, #raw, 2 do c[raw[i]] = raw[i + 1] end
  if c['name'] ~= ARGV[3] and tonumber(c['pending']) == 0 and tonumber(c['idle']) >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], c['name'])
    removed[#removed + 1] = c['name']
  end
end
return removed
