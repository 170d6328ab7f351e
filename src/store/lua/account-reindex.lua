-- Rewrites an account's risk-index entries only while the account is still
-- at the state they were computed from.
-- KEYS: state, rev, then the keys the index operations name
-- ARGV: expected seq, index operations (see index-ops.lua)
if tonumber(redis.call('HGET', KEYS[1], 'seq') or '0') ~= tonumber(ARGV[1]) then return 0 end
run_ops(ARGV, 2, true)
redis.call('INCR', KEYS[2])
return 1
