-- Extends a lease that is still ours.
-- KEYS[1] the mailbox's lease key
-- ARGV[1] the lease value we were given, ARGV[2] lease length in ms
-- Returns 1 when renewed, 0 when the lease expired or another producer holds it now.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
