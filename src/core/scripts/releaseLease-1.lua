-- Gives a lease up (rebalancing, shutdown) so another producer can take the mailbox at once.
-- KEYS[1] the mailbox's lease key
-- ARGV[1] the lease value we were given
-- Returns 1 when released, 0 when it was no longer ours (nothing is touched then).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
