-- Included before account-apply.lua and account-reindex.lua.
-- The risk-index operations an apply or reindex carries: k, then
-- (op, key number, score, member) x k; op is za/zr/sa/sr (ZADD/ZREM/SADD/SREM),
-- the key is KEYS[key number]. run_ops(t, i, go) reads them from t[i] on
-- (t: ARGV, or an apply item's fields), runs them only if `go`, and returns
-- the index just past them.
local function run_ops(t, i, go)
  local k = tonumber(t[i]); i = i + 1
  for _ = 1, k do
    if go then
      local op, key, m = t[i], KEYS[tonumber(t[i + 1])], t[i + 3]
      if op == 'za' then redis.call('ZADD', key, t[i + 2], m)
      elseif op == 'zr' then redis.call('ZREM', key, m)
      elseif op == 'sa' then redis.call('SADD', key, m)
      else redis.call('SREM', key, m) end
    end
    i = i + 4
  end
  return i
end
