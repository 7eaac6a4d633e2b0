#!lua
--[[
  Records everything one delivered batch decided, in one step: dedupe markers and
  acknowledgements for what the sink took, acknowledgements for duplicates, failure records and
  retry times for what it will take later, dead letters for what it never will. The `#!lua` line
  makes Redis (>= 7.0) refuse the whole script up front when it is out of memory or a read-only
  replica, so a refused settle changes nothing and the worker simply sends it again later.
  Sending it again after it did run (a reply lost with the connection) changes nothing either:
  markers are rewritten, acknowledgements and dead letters happen only for entries still pending,
  and a failure record is written only over one with fewer attempts.

  KEYS[1] stream, KEYS[2] dlq stream, KEYS[3] failures hash, KEYS[4] retries sorted set,
  KEYS[5] handouts hash, then one dedupe marker key per delivered entry (KEYS[6..5+D])

  ARGV[1] consumer group
  ARGV[2] dedupe marker TTL (seconds)
  ARGV[3] 1 when the batch may hold entries with retry state (retries, recovered orphans) to clear
  ARGV[4] D, then D ids of delivered entries (their markers are KEYS[6..5+D], same order)
  then U, then U ids of duplicates (already delivered under their key: acknowledged only)
  then R, then R triples of retries: id, attempts so far, failure record JSON, due time (ms)
  then X, then X dead letters: id, F, then F field/value strings of the dead letter
  (the entry's own `key`, `email` and `type` fields are copied from the stream here)

  Returns {acknowledged, retriesRecorded, deadLetterIds}: deadLetterIds has one element per dead
  letter, its DLQ id, or false when the entry was not pending any more (settled before).
]]
local stream, group = KEYS[1], ARGV[1]
local clear = ARGV[3] == '1'
local i = 4
local acked = 0

-- One command for many ids, a thousand at a time (unpack has a limit on its arguments). `group`
-- goes before the ids (XACK); the reply of XACK counts the entries it acknowledged.
local function each(command, key, ids, group)
  for from = 1, #ids, 1000 do
    local to = math.min(#ids, from + 999)
    local n
    if group then n = redis.call(command, key, group, unpack(ids, from, to))
    else n = redis.call(command, key, unpack(ids, from, to)) end
    if command == 'XACK' then acked = acked + n end
  end
end

local settled = {}
local delivered = tonumber(ARGV[i]); i = i + 1
for d = 1, delivered do
  settled[d] = ARGV[i]; i = i + 1
  redis.call('SET', KEYS[5 + d], '1', 'EX', ARGV[2])
end
local duplicates = tonumber(ARGV[i]); i = i + 1
for _ = 1, duplicates do
  settled[#settled + 1] = ARGV[i]; i = i + 1
end
if #settled > 0 then
  each('XACK', stream, settled, group)
  if clear then
    each('HDEL', KEYS[3], settled)
    each('ZREM', KEYS[4], settled)
    each('HDEL', KEYS[5], settled)
  end
end

local recorded = 0
local retries = tonumber(ARGV[i]); i = i + 1
for _ = 1, retries do
  local id, attempts, record, dueAt = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]
  i = i + 4
  local previous = redis.call('HGET', KEYS[3], id)
  local newer = (not previous) or (tonumber(cjson.decode(previous)['attempts']) or 0) < attempts
  -- Only an entry still pending can be retried; one acknowledged meanwhile is done.
  local pending = redis.call('XPENDING', stream, group, id, id, 1)
  if newer and pending[1] then
    redis.call('HSET', KEYS[3], id, record)
    redis.call('ZADD', KEYS[4], dueAt, id)
    redis.call('HDEL', KEYS[5], id)
    recorded = recorded + 1
  end
end

local deadIds = {}
local dead = tonumber(ARGV[i]); i = i + 1
for x = 1, dead do
  local id, count = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  local fields = {}
  local original = redis.call('XRANGE', stream, id, id)
  if original[1] then
    local f = original[1][2]
    for j = 1, #f, 2 do
      if f[j] == 'key' or f[j] == 'email' or f[j] == 'type' then
        fields[#fields + 1] = f[j]
        fields[#fields + 1] = f[j + 1]
      end
    end
  end
  for j = 0, count - 1 do fields[#fields + 1] = ARGV[i + j] end
  i = i + count
  if redis.call('XACK', stream, group, id) == 1 then
    deadIds[x] = redis.call('XADD', KEYS[2], '*', unpack(fields))
    acked = acked + 1
    redis.call('HDEL', KEYS[3], id)
    redis.call('ZREM', KEYS[4], id)
    redis.call('HDEL', KEYS[5], id)
  else
    deadIds[x] = false
  end
end

return { acked, recorded, deadIds }
