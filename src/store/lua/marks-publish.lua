-- Publishes a mark and/or a market definition.
-- KEYS: marks, marklog. ARGV: symbol, price ('' = no mark), mark version,
-- market JSON ('' = none), market version. Each part is taken only if newer
-- than what Redis holds (versions come from PostgreSQL), so Redis ends on
-- PostgreSQL's latest however posts interleave. Returns the new epoch, or 0
-- when nothing was newer.
local changed = false
if ARGV[2] ~= '' then
  local current = tonumber(redis.call('HGET', KEYS[1], MARK_VERSION_PREFIX .. ARGV[1]) or '0')
  if tonumber(ARGV[3]) > current then
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], MARK_VERSION_PREFIX .. ARGV[1], ARGV[3])
    changed = true
  end
end
if ARGV[4] ~= '' then
  local current = tonumber(redis.call('HGET', KEYS[1], MARKET_VERSION_PREFIX .. ARGV[1]) or '0')
  if tonumber(ARGV[5]) > current then
    redis.call('HSET', KEYS[1], MARKET_PREFIX .. ARGV[1], ARGV[4], MARKET_VERSION_PREFIX .. ARGV[1], ARGV[5])
    changed = true
  end
end
if not changed then return 0 end
local epoch = redis.call('HINCRBY', KEYS[1], EPOCH_FIELD, 1)
redis.call('ZADD', KEYS[2], epoch, ARGV[1])
return epoch
