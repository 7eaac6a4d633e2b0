-- Keeps entries this consumer still holds from looking orphaned: a slow delivery, or outcomes
-- waiting for Redis to take writes again. XCLAIM ... JUSTID to ourselves resets the idle time
-- without counting a delivery; it needs no memory, so it works while Redis refuses other writes
-- for want of it. Only entries still ours are touched: one another worker took is left to it.
-- KEYS[1] stream
-- ARGV[1] consumer group, ARGV[2] this consumer, then entry ids
-- Returns how many were touched.
local touched = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    touched = touched + 1
  end
end
return touched
