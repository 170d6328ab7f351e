-- Publishes a mark and/or a market definition to one shard's copy of the
-- marks, and, for a tick, finds that shard's accounts the mark endangers.
-- KEYS: the shard's marks, marklog, rev, idx:<symbol>:long, idx:<symbol>:short
-- ARGV: symbol, price ('' = no mark), mark version, market JSON ('' = none),
-- market version, then for a tick the highest long and short scores a
-- liquidatable holder has ('' = no lookup; see risk-index.ts endangeredRanges).
-- Each part is taken only if newer than what the shard holds (versions come
-- from PostgreSQL), so every shard ends on PostgreSQL's latest however posts
-- interleave. A mark bumps the shard's report revision. Returns the shard's
-- new epoch (0 when nothing was newer), then the endangered members (long
-- holders, then short). The lookup runs after the write in the same call: an
-- apply on this shard either ran before it (and is in the lists read here) or
-- runs after it and sees the new epoch.
local changed = false
if ARGV[2] ~= '' then
  local current = tonumber(redis.call('HGET', KEYS[1], MARK_VERSION_PREFIX .. ARGV[1]) or '0')
  if tonumber(ARGV[3]) > current then
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], MARK_VERSION_PREFIX .. ARGV[1], ARGV[3])
    changed = true
  end
  redis.call('INCR', KEYS[3])
end
if ARGV[4] ~= '' then
  local current = tonumber(redis.call('HGET', KEYS[1], MARKET_VERSION_PREFIX .. ARGV[1]) or '0')
  if tonumber(ARGV[5]) > current then
    redis.call('HSET', KEYS[1], MARKET_PREFIX .. ARGV[1], ARGV[4], MARKET_VERSION_PREFIX .. ARGV[1], ARGV[5])
    changed = true
  end
end
local epoch = 0
if changed then
  epoch = redis.call('HINCRBY', KEYS[1], EPOCH_FIELD, 1)
  redis.call('ZADD', KEYS[2], epoch, ARGV[1])
end
local longs, shorts = {}, {}
if ARGV[6] ~= '' then
  longs = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[6])
  shorts = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', ARGV[7])
end
return {epoch, longs, shorts}
