/**
 * The engine processes serving one key prefix: a sorted set of instance ids
 * scored by their last heartbeat, in Redis's own clock (TIME), so engines on
 * hosts whose clocks disagree still see each other.
 */
import type { KeySpace, RedisClient } from './redis.js';
import { runScript, SCRIPTS } from './scripts.js';

/** Records this engine's heartbeat; returns how many engines are alive on the prefix. */
export async function heartbeat(redis: RedisClient, keys: KeySpace, instanceId: string, staleMs: number): Promise<number> {
  return Number(await runScript(redis, SCRIPTS.engineHeartbeat, [keys.engines, instanceId, staleMs]));
}

/** Leaves the set (on shutdown), so the others need not wait for this one to go stale. */
export async function leave(redis: RedisClient, keys: KeySpace, instanceId: string): Promise<void> {
  await redis.zrem(keys.engines, instanceId);
}
