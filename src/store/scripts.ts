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
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { BOOT_FIELD, EPOCH_FIELD, MARKET_PREFIX, MARKET_VERSION_PREFIX, MARK_VERSION_PREFIX } from './marks-hash.js';

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
  /** markets.ts: sent by EVAL, never by SHA (see publishMarket). */
  marksPublish: new LuaScript(['marks-publish.lua'], 2),
} as const;

export async function loadScripts(redis: Redis): Promise<void> {
  await Promise.all(Object.values(SCRIPTS).map((s) => redis.script('LOAD', s.lua)));
}

export const isNoScript = (error: unknown) => error instanceof Error && error.message.includes('NOSCRIPT');

/**
 * EVALSHA with the script's keys and arguments. After a NOSCRIPT the call is
 * sent again, behind anything issued meanwhile on the connection.
 */
export async function runScript(redis: Redis, script: LuaScript, keysAndArgs: (string | number)[]): Promise<unknown> {
  const args = script.numberOfKeys >= 0 ? [script.numberOfKeys, ...keysAndArgs] : keysAndArgs;
  try {
    return await redis.evalsha(script.sha, ...(args as [number, ...(string | number)[]]));
  } catch (error) {
    if (!isNoScript(error)) throw error;
    await loadScripts(redis);
    return redis.evalsha(script.sha, ...(args as [number, ...(string | number)[]]));
  }
}
