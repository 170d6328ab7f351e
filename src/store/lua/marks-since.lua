-- What changed in the marks hash since an epoch.
-- KEYS: marks, marklog. ARGV: the epoch the caller holds.
-- Returns the epoch and boot marker, then (symbol, mark or '', market JSON
-- or '') for each symbol changed since that epoch.
local head = redis.call('HMGET', KEYS[1], EPOCH_FIELD, BOOT_FIELD)
local out = {}
for _, s in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')) do
  local v = redis.call('HMGET', KEYS[1], s, MARKET_PREFIX .. s)
  out[#out + 1] = s
  out[#out + 1] = v[1] or ''
  out[#out + 1] = v[2] or ''
end
return {head[1] or false, head[2] or false, out}
