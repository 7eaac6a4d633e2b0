-- Claims entries left pending too long (their worker died, or their acknowledgement was lost,
-- possibly our own). Entries waiting in the retries set are not orphans: they are idle on purpose
-- until their retry is due. The caller skips those of its own it is still delivering.
-- KEYS[1] stream, KEYS[2] retries sorted set
-- ARGV[1] consumer group, ARGV[2] consumer, ARGV[3] min idle ms, ARGV[4] at most this many,
-- ARGV[5] pending entries to look at
-- Returns a list of {id, fields, deliveryCount}; fields is false when the entry was trimmed.
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', tonumber(ARGV[3]), '-', '+', tonumber(ARGV[5]))
local claimed = {}
local limit = tonumber(ARGV[4])
for _, p in ipairs(pending) do
  if #claimed >= limit then break end
  local id, count = p[1], p[4]
  if not redis.call('ZSCORE', KEYS[2], id) then
    -- XCLAIM re-checks the idle time, so two claimers racing cannot both win.
    local entries = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), id)
    if entries[1] then claimed[#claimed + 1] = { entries[1][1], entries[1][2], count + 1 } end
  end
end
return claimed
