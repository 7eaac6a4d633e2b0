-- Dead-letters an entry: appends it to the DLQ with its original fields and what went wrong,
-- acknowledges it and forgets its retry state, all at once, so it is never both pending and
-- dead, nor lost between the two.
-- KEYS[1] stream, KEYS[2] dlq stream, KEYS[3] failures hash, KEYS[4] retries sorted set
-- ARGV[1] consumer group, ARGV[2] entry id, then field/value pairs of the dead letter
-- Returns the id of the dead letter, or false when the entry was already acknowledged.
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return false
end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[4], ARGV[2])
return id
