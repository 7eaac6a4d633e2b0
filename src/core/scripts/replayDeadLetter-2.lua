-- Sends a dead letter back to the email stream (its original key, email and type, as a new
-- entry) and removes it from the DLQ, together, so a replay neither loses nor doubles it.
-- KEYS[1] dlq stream, KEYS[2] email stream
-- ARGV[1] dead letter id
-- Returns the new stream entry id, or false when there is no such dead letter.
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if not found[1] then return false end
local fields = found[1][2]
local key, email, kind
for i = 1, #fields, 2 do
  if fields[i] == 'key' then key = fields[i + 1]
  elseif fields[i] == 'email' then email = fields[i + 1]
  elseif fields[i] == 'type' then kind = fields[i + 1] end
end
if not key or not email then return redis.error_reply('dead letter ' .. ARGV[1] .. ' has no key or email field') end
-- Dead letters from before entry types (v3) have none: they are all message.new.
local id = redis.call('XADD', KEYS[2], '*', 'key', key, 'email', email, 'type', kind or 'message.new')
redis.call('XDEL', KEYS[1], ARGV[1])
return id
