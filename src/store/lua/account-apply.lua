-- Applies committed ledger rows' effect to many accounts at once.
-- KEYS: marks, rev, then per item its lock, state and client-orders keys,
--       then every key the items' index operations name (by number)
-- ARGV: item count, client-order hash TTL in ms (0: none), then per item one
--       line-separated string (no field holds a newline):
--         token ('' = no lock to release), expected seq, new seq, balance,
--         n, (symbol, quantity, entry) x n, m, symbol x m,
--         index operations (see index-ops.lua),
--         1 if a client order follows, else 0
--       followed, for an item with a client order, by its id and stored result
--       (two arguments of their own: those are the caller's text).
-- One string per item rather than ~27 arguments: the client's cost grows
-- with the argument count, and the split here is cheap.
-- Each item applies only on top of the exact state it was computed from;
-- PostgreSQL already holds its rows, so a stale item is skipped (index
-- included) and catch-up brings Redis level. Bumps the report revision once
-- and returns each item's outcome with the marks' epoch and boot marker, so
-- callers learn in the same round trip whether a mark moved.
local applied = {}
local ttl = tonumber(ARGV[2])
local a = 3
for item = 1, tonumber(ARGV[1]) do
  local lock, state, orders = KEYS[item * 3], KEYS[item * 3 + 1], KEYS[item * 3 + 2]
  local f, nf = {}, 0
  for field in string.gmatch(ARGV[a] .. '\n', '([^\n]*)\n') do nf = nf + 1; f[nf] = field end
  a = a + 1
  local token = f[1]
  local go = tonumber(redis.call('HGET', state, 'seq') or '0') == tonumber(f[2])
  if go then redis.call('HSET', state, 'seq', f[3], 'bal', f[4]) end
  local i = 6
  for _ = 1, tonumber(f[5]) do
    if go then redis.call('HSET', state, 'q:' .. f[i], f[i + 1], 'e:' .. f[i], f[i + 2]) end
    i = i + 3
  end
  local n = tonumber(f[i]); i = i + 1
  for _ = 1, n do
    if go then redis.call('HDEL', state, 'q:' .. f[i], 'e:' .. f[i]) end
    i = i + 1
  end
  i = run_ops(f, i, go)
  if f[i] == '1' then
    if go then
      redis.call('HSET', orders, ARGV[a], ARGV[a + 1])
      if ttl > 0 then redis.call('PEXPIRE', orders, ttl) end
    end
    a = a + 2
  end
  if token ~= '' and redis.call('GET', lock) == token then redis.call('DEL', lock) end
  applied[item] = go and 1 or 0
end
redis.call('INCR', KEYS[2])
local marks = redis.call('HMGET', KEYS[1], EPOCH_FIELD, BOOT_FIELD)
return {applied, marks[1], marks[2]}
