-- Announces a live producer and lists the live ones, so each can compute its fair share of leases.
-- KEYS[1] the producer registry (sorted set: producer id scored by expiry, ms of Redis time)
-- ARGV[1] producer id, ARGV[2] how long the registration lasts without renewal, in ms
-- Returns the ids of live producers, this one included.
-- Redis' own clock scores every entry, so producers on hosts with skewed clocks still agree.
local now = redis.call('TIME')
local nowMs = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', nowMs)
redis.call('ZADD', KEYS[1], nowMs + tonumber(ARGV[2]), ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
