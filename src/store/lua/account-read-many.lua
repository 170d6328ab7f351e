-- Many accounts' state hashes in one command (the margin report reads
-- hundreds per page), each flattened to one string (fields and values joined
-- by newlines; none contains one), which is far cheaper to send and parse
-- than nested arrays.
-- KEYS: account state hashes
local out = {}
for i, key in ipairs(KEYS) do out[i] = table.concat(redis.call('HGETALL', key), '\n') end
return out
