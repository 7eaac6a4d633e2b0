--[[
  Trims acknowledged entries from the front of the stream until it holds at most maxLen, never
  touching an entry that some consumer group has not acknowledged (Redis 7.0 has no ACKED
  trimming): the floor is, over all groups, the oldest pending ID and the first entry after the
  group's last-delivered-id. A stream without groups is never trimmed: nobody has read it yet.

  KEYS[1] stream
  ARGV[1] maxLen
  ARGV[2] most entries removed per call (bounds the script's run time)

  Returns {removed, length after}.
]]
local stream = KEYS[1]
local maxLen = tonumber(ARGV[1])
local length = redis.call('XLEN', stream)
local excess = math.min(length - maxLen, tonumber(ARGV[2]))
if excess <= 0 then
  return {0, length}
end

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end

local groups = redis.call('XINFO', 'GROUPS', stream)
if #groups == 0 then
  return {0, length}
end
-- The first entry we must keep if only maxLen counted.
local window = redis.call('XRANGE', stream, '-', '+', 'COUNT', excess + 1)
local floor = window[#window][1]
for _, group in ipairs(groups) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  local pending = redis.call('XPENDING', stream, info['name'])
  if pending[1] > 0 and less(pending[2], floor) then
    floor = pending[2]
  end
  local nextUnread = redis.call('XRANGE', stream, '(' .. info['last-delivered-id'], '+', 'COUNT', 1)
  if #nextUnread > 0 and less(nextUnread[1][1], floor) then
    floor = nextUnread[1][1]
  end
end
local removed = redis.call('XTRIM', stream, 'MINID', floor)
return {removed, length - removed}
