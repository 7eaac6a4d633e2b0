-- Takes the lease on one mailbox if nobody holds it, with a fresh fencing token.
-- KEYS[1] the mailbox's lease key, KEYS[2] the account's fencing counter (same hash tag)
-- ARGV[1] producer id, ARGV[2] lease length in ms
-- Returns the lease value "<token>:<producer id>" (the fencing token the append script checks),
-- or false when another producer holds it.
-- The counter only moves on success, so tokens of one account strictly increase with each new
-- holder and a value can never come back after its holder lost it.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
local token = redis.call('INCR', KEYS[2])
local value = token .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value
