-- Takes an account's lock and reads it, in one step.
-- KEYS: lock, lock-waiter, state, client-orders
-- ARGV: token, ttl ms, waiter id, client order id ('' for none)
-- Returns {0} when another writer holds the lock, else {1, state (HGETALL), stored client order or false}.
-- A failed attempt leaves its waiter id behind (briefly), and the next free lock
-- goes to that waiter, so two processes hammering one account take turns.
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', 200)
  return {0}
end
local waiter = redis.call('GET', KEYS[2])
if waiter and waiter ~= ARGV[3] then return {0} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if waiter then redis.call('DEL', KEYS[2]) end
local order = false
if ARGV[4] ~= '' then order = redis.call('HGET', KEYS[4], ARGV[4]) end
return {1, redis.call('HGETALL', KEYS[3]), order}
