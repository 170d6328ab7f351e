-- Records an engine process's heartbeat, in Redis's own clock (TIME).
-- KEYS: engines; ARGV: instance id, ms after which a silent member is dropped.
-- Returns how many engines beat within that window, this one included.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return redis.call('ZCARD', KEYS[1])
