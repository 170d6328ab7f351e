import { defineScript, runScript } from './scripts.js';
// KEYS: engines; ARGV: instance id, ms after which a silent member is dropped.
// Returns how many engines beat within that window, this one included.
const HEARTBEAT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return redis.call('ZCARD', KEYS[1])
`;
const SCRIPT = defineScript('heartbeat', HEARTBEAT, 1);
/** Records this engine's heartbeat; returns how many engines are alive on the prefix. */
export async function heartbeat(redis, keys, instanceId, staleMs) {
    return Number(await runScript(redis, SCRIPT, [keys.engines, instanceId, staleMs]));
}
/** Leaves the set (on shutdown), so the others need not wait for this one to go stale. */
export async function leave(redis, keys, instanceId) {
    await redis.zrem(keys.engines, instanceId);
}
//# sourceMappingURL=engines.js.map