/**
 * Every Lua script the engine runs, listed once (SCRIPTS). Each lives in its
 * own file under ./lua (the build copies them beside the compiled modules),
 * and is read the first time it is needed, behind a prelude that gives it the
 * marks hash's field names from marks-hash.ts.
 *
 * Scripts are called by SHA and loaded at start-up; after a Redis restart or
 * SCRIPT FLUSH (NOSCRIPT) they are loaded again and the call is retried once.
 * (ioredis's defineCommand would send the whole script body inside every
 * explicit pipeline.) Lua keeps each step atomic; the math stays in
 * TypeScript (Lua numbers are binary floats), so scripts only move strings.
 */
import { createHash } from 'node:crypto';
import slotOf from 'cluster-key-slot';
import { readFileSync } from 'node:fs';
import { BOOT_FIELD, EPOCH_FIELD, MARKET_PREFIX, MARKET_VERSION_PREFIX, MARK_VERSION_PREFIX } from './marks-hash.js';
import { primaries, type RedisClient } from './redis.js';

const PRELUDE = Object.entries({ EPOCH_FIELD, BOOT_FIELD, MARK_VERSION_PREFIX, MARKET_PREFIX, MARKET_VERSION_PREFIX })
  .map(([name, value]) => `local ${name} = ${JSON.stringify(value)}\n`)
  .join('');

export class LuaScript {
  private source: { lua: string; sha: string } | null = null;

  constructor(
    /** Its files under ./lua, concatenated in order (shared functions first). */
    readonly files: readonly string[],
    /** How many of its arguments are keys (-1: the caller passes the count first). */
    readonly numberOfKeys: number,
  ) {}

  get lua(): string {
    return this.load().lua;
  }

  get sha(): string {
    return this.load().sha;
  }

  private load(): { lua: string; sha: string } {
    if (this.source === null) {
      const lua = PRELUDE + this.files.map((f) => readFileSync(new URL(`./lua/${f}`, import.meta.url), 'utf8')).join('\n');
      this.source = { lua, sha: createHash('sha1').update(lua).digest('hex') };
    }
    return this.source;
  }
}

export const SCRIPTS = {
  /** account-lock.ts */
  accountAcquire: new LuaScript(['account-acquire.lua'], 4),
  accountRelease: new LuaScript(['account-release.lua'], 1),
  /** account-state.ts */
  accountApply: new LuaScript(['index-ops.lua', 'account-apply.lua'], -1),
  accountReindex: new LuaScript(['index-ops.lua', 'account-reindex.lua'], -1),
  accountPeek: new LuaScript(['account-peek.lua'], -1),
  accountReadMany: new LuaScript(['account-read-many.lua'], -1),
  /** engines.ts */
  engineHeartbeat: new LuaScript(['engine-heartbeat.lua'], 1),
  /** mark-book.ts */
  marksSince: new LuaScript(['marks-since.lua'], 2),
  /** markets.ts */
  marksPublish: new LuaScript(['marks-publish.lua'], 5),
} as const;

/** Loads every script on every primary (on a cluster, EVALSHA runs on the primary owning the keys' slot). */
export async function loadScripts(redis: RedisClient): Promise<void> {
  await Promise.all(primaries(redis).flatMap((node) => Object.values(SCRIPTS).map((s) => node.script('LOAD', s.lua))));
}

/**
 * With REDIS_ASSERT_ONE_SLOT=1 (the tests set it), every script call checks
 * that its keys hash to one slot and throws otherwise: the rule a Redis
 * Cluster enforces, proved on a single node too.
 */
const assertOneSlot = process.env.REDIS_ASSERT_ONE_SLOT === '1';

export function checkOneSlot(keys: readonly string[]): void {
  if (!assertOneSlot || keys.length < 2) return;
  const slot = slotOf(keys[0]!);
  for (const key of keys) {
    if (slotOf(key) !== slot) throw new Error(`script keys span slots: ${keys[0]} (${slot}) and ${key} (${slotOf(key)})`);
  }
}

/** The keys of a call's arguments (the key count first when the script takes any number). */
function keysOfCall(script: LuaScript, keysAndArgs: readonly (string | number)[]): string[] {
  const n = script.numberOfKeys >= 0 ? script.numberOfKeys : Number(keysAndArgs[0]);
  const from = script.numberOfKeys >= 0 ? 0 : 1;
  return keysAndArgs.slice(from, from + n).map(String);
}

export const isNoScript = (error: unknown) => error instanceof Error && error.message.includes('NOSCRIPT');

/**
 * EVALSHA with the script's keys and arguments. After a NOSCRIPT the call is
 * sent again, behind anything issued meanwhile on the connection.
 */
export async function runScript(redis: RedisClient, script: LuaScript, keysAndArgs: (string | number)[]): Promise<unknown> {
  if (assertOneSlot) checkOneSlot(keysOfCall(script, keysAndArgs));
  const args = script.numberOfKeys >= 0 ? [script.numberOfKeys, ...keysAndArgs] : keysAndArgs;
  try {
    return await redis.evalsha(script.sha, ...(args as [number, ...(string | number)[]]));
  } catch (error) {
    if (!isNoScript(error)) throw error;
    await loadScripts(redis);
    return redis.evalsha(script.sha, ...(args as [number, ...(string | number)[]]));
  }
}
