-- Marks an email delivered and acknowledges its entry, in one step, so a crash can never leave
-- an acknowledged entry without its dedupe marker (or a marker for an entry still pending).
-- KEYS[1] stream, KEYS[2] delivered marker of the idempotency key, KEYS[3] failures hash,
-- KEYS[4] retries sorted set
-- ARGV[1] consumer group, ARGV[2] entry id, ARGV[3] marker TTL in seconds
-- Returns the number of entries acknowledged (0 when another worker acknowledged it first).
redis.call('SET', KEYS[2], '1', 'EX', ARGV[3])
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if redis.call('HDEL', KEYS[3], ARGV[2]) == 1 then
  redis.call('ZREM', KEYS[4], ARGV[2])
end
return acked
