-- Records a failed delivery attempt and schedules the retry. The entry stays pending with its
-- consumer; the retries set tells every worker of the group when it is due, and keeps the
-- orphan claimer away from it until then.
-- KEYS[1] failures hash, KEYS[2] retries sorted set
-- ARGV[1] entry id, ARGV[2] failure record (JSON), ARGV[3] due time (ms since the epoch)
-- Returns 1.
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
