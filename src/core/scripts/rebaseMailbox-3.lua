--[[
  Moves a mailbox's sync position: first sight (START_FROM), a UIDVALIDITY change, or an
  operator's `mailbox reset --since`. Re-reading is safe because appendBatch skips keys already
  ingested. A new UIDVALIDITY also forgets what change tracking knew of the old UIDs (they name
  nothing any more) and its cursors.

  KEYS[1] mailbox state hash     uidValidity, lastUid, resetSince, filterUntil, highestModseq, scanSeq
  KEYS[2] lease key              the mailbox lease (scale-out); only read
  KEYS[3] uid hash               UID -> what change tracking saw of the message

  ARGV[1] fencing token; '' skips the lease check (single producer)
  ARGV[2] uidValidity expected in the state now; '' means the mailbox must be new to us
  ARGV[3] new uidValidity
  ARGV[4] new lastUid
  ARGV[5] resetSince value this rebase answers; '' for none. Cleared only if unchanged, so a
          reset requested meanwhile is not lost.
  ARGV[6] filterUntil: the highest UID this re-read lists through FETCH_FILTER; '' for no filter

  Returns 0 ok, 1 the state moved under us (stale), 2 lease lost.
]]
local state, lease, uids = KEYS[1], KEYS[2], KEYS[3]
local token, expected = ARGV[1], ARGV[2]

if token ~= '' and redis.call('GET', lease) ~= token then
  return 2
end
local known = redis.call('HGET', state, 'uidValidity')
if (expected == '' and known) or (expected ~= '' and known ~= expected) then
  return 1
end
if known and known ~= ARGV[3] then
  redis.call('DEL', uids)
  redis.call('HDEL', state, 'highestModseq', 'scanSeq')
end
redis.call('HSET', state, 'uidValidity', ARGV[3], 'lastUid', ARGV[4])
if ARGV[5] ~= '' and redis.call('HGET', state, 'resetSince') == ARGV[5] then
  redis.call('HDEL', state, 'resetSince')
end
if ARGV[6] ~= '' then
  redis.call('HSET', state, 'filterUntil', ARGV[6])
else
  redis.call('HDEL', state, 'filterUntil')
end
return 0
