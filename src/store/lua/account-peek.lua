-- The lock-free read of the optimistic path, for many accounts at once.
-- KEYS: marks, then per account: state, client-orders, lock, contended
-- ARGV: per account: the seq of the caller's cached copy ('' for none), client order id ('' for none)
-- Returns the marks' epoch and boot marker, then per account whether it is
-- free (no writer holds its lock and none collided on it lately), its seq,
-- its whole state only when the caller's copy is not at that seq (fields and
-- values joined by newlines), and a booked client order.
local marks = redis.call('HMGET', KEYS[1], EPOCH_FIELD, BOOT_FIELD)
local out = {}
for a = 1, (#KEYS - 1) / 4 do
  local k = 2 + (a - 1) * 4
  if redis.call('EXISTS', KEYS[k + 2], KEYS[k + 3]) > 0 then
    out[a] = {0}
  else
    local seq = redis.call('HGET', KEYS[k], 'seq') or '0'
    local state = false
    if seq ~= ARGV[2 * a - 1] then state = table.concat(redis.call('HGETALL', KEYS[k]), '\n') end
    local order = false
    if ARGV[2 * a] ~= '' then order = redis.call('HGET', KEYS[k + 1], ARGV[2 * a]) end
    out[a] = {1, seq, state, order}
  end
end
return {marks[1], marks[2], out}
