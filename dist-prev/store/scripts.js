/**
 * Lua scripts called by SHA. They are loaded at start-up; after a Redis
 * restart or SCRIPT FLUSH (NOSCRIPT) they are loaded again and the call is
 * retried once. (ioredis's defineCommand would send the whole script body
 * inside every explicit pipeline.)
 */
import { createHash } from 'node:crypto';
export class LuaScript {
    name;
    lua;
    numberOfKeys;
    sha;
    constructor(name, lua, numberOfKeys) {
        this.name = name;
        this.lua = lua;
        this.numberOfKeys = numberOfKeys;
        this.sha = createHash('sha1').update(lua).digest('hex');
    }
}
const registry = new Set();
export function defineScript(name, lua, numberOfKeys) {
    const script = new LuaScript(name, lua, numberOfKeys);
    registry.add(script);
    return script;
}
export async function loadScripts(redis) {
    await Promise.all([...registry].map((s) => redis.script('LOAD', s.lua)));
}
export const isNoScript = (error) => error instanceof Error && error.message.includes('NOSCRIPT');
/**
 * EVALSHA with the script's keys and arguments. After a NOSCRIPT the call is
 * sent again, behind anything issued meanwhile on the connection.
 */
export async function runScript(redis, script, keysAndArgs) {
    // A script defined with numberOfKeys -1 takes its key count as the first argument.
    const args = script.numberOfKeys >= 0 ? [script.numberOfKeys, ...keysAndArgs] : keysAndArgs;
    try {
        return await redis.evalsha(script.sha, ...args);
    }
    catch (error) {
        if (!isNoScript(error))
            throw error;
        await loadScripts(redis);
        return redis.evalsha(script.sha, ...args);
    }
}
//# sourceMappingURL=scripts.js.map