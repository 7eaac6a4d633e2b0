--[[
  Moves a mailbox's sync position: first sight (START_FROM), a UIDVALIDITY change, or an
  operator's `mailbox reset --since`. Re-reading is safe because appendBatch skips keys already
  ingested.

  KEYS[1] mailbox state hash     uidValidity, lastUid, resetSince
  KEYS[2] lease key              the mailbox lease (scale-out); only read

  ARGV[1] fencing token; '' skips the lease check (single producer)
  ARGV[2] uidValidity expected in the state now; '' means the mailbox must be new to us
  ARGV[3] new uidValidity
  ARGV[4] new lastUid
  ARGV[5] resetSince value this rebase answers; '' for none. Cleared only if unchanged, so a
          reset requested meanwhile is not lost.

  Returns 0 ok, 1 the state moved under us (stale), 2 lease lost.
]]
local state, lease = KEYS[1], KEYS[2]
local token, expected = ARGV[1], ARGV[2]

if token ~= '' and redis.call('GET', lease) ~= token then
  return 2
end
local known = redis.call('HGET', state, 'uidValidity')
if (expected == '' and known) or (expected ~= '' and known ~= expected) then
  return 1
end
redis.call('HSET', state, 'uidValidity', ARGV[3], 'lastUid', ARGV[4])
if ARGV[5] ~= '' and redis.call('HGET', state, 'resetSince') == ARGV[5] then
  redis.call('HDEL', state, 'resetSince')
end
return 0
