/**
 * A real engine (real Redis, real PostgreSQL) isolated in its own PostgreSQL
 * schema and Redis key prefix, with the fastify app built around it.
 */
import { randomBytes } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import { pino, type Logger } from 'pino';
import { expect, inject } from 'vitest';
import { loadConfig, type Config } from '../../src/config.js';
import { createEngine, type Engine } from '../../src/engine.js';
import { buildApp, type App } from '../../src/http/app.js';
import { createSql, type Sql } from '../../src/store/postgres.js';
import { scanAll, type KeySpace, type RedisClient } from '../../src/store/redis.js';
import { until } from './until.js';

export interface Isolation {
  readonly schema: string;
  readonly prefix: string;
  readonly redisUrl: string;
  readonly databaseUrl: string;
  /** `host:port,...` of the test cluster (the `cluster` project), or '' for one node at redisUrl. */
  readonly redisClusterNodes: string;
}

export function newIsolation(): Isolation {
  const id = randomBytes(5).toString('hex');
  return { schema: `t_${id}`, prefix: `t_${id}`, redisUrl: inject('redisUrl'), databaseUrl: inject('databaseUrl'), redisClusterNodes: inject('redisClusterNodes') };
}

/** The settings that put an engine process (or a CLI) in the isolation. */
export function isolationEnv(iso: Isolation): Record<string, string> {
  const env: Record<string, string> = { DATABASE_URL: iso.databaseUrl, DATABASE_SCHEMA: iso.schema, REDIS_KEY_PREFIX: iso.prefix };
  if (iso.redisClusterNodes) env.REDIS_CLUSTER_NODES = iso.redisClusterNodes;
  else env.REDIS_URL = iso.redisUrl;
  // The `shards` project runs every suite with the keys spread over several index shards on one node.
  if (process.env.TEST_REDIS_SHARDS) env.REDIS_SHARDS = process.env.TEST_REDIS_SHARDS;
  return env;
}

/** The admin key every test engine accepts (ADMIN_API_KEY): tests authenticate as an admin unless they say otherwise. */
export const ADMIN_KEY = 'test-admin-key-0123456789abcdefghijklmnopqrstuvwxyz';

export function testConfig(iso: Isolation, env: Record<string, string> = {}): Config {
  return loadConfig({ ADMIN_API_KEY: ADMIN_KEY, ...isolationEnv(iso), LOG_LEVEL: 'silent', ...env });
}

export interface TestEngine {
  readonly engine: Engine;
  readonly app: App;
  readonly config: Config;
  close(): Promise<void>;
}

/** `log`: where the engine and the app log (default: silent, or TEST_LOG_LEVEL). */
export async function startEngine(iso: Isolation, env: Record<string, string> = {}, log?: Logger): Promise<TestEngine> {
  const config = testConfig(iso, env);
  log ??= pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const engine = await createEngine(config, log);
  const app = await buildApp(engine, { logger: log });
  await app.ready();
  return {
    engine,
    app,
    config,
    async close() {
      await app.close();
      await engine.close();
    },
  };
}

/** Direct access to the isolated schema and key space, for assertions and clean-up. */
export interface Inspector {
  readonly sql: Sql;
  /** A client of the engine's Redis: the test cluster's in the `cluster` project. */
  readonly redis: RedisClient;
  /** Every key under the isolation's prefix, sorted (every primary's, on a cluster). */
  keys(): Promise<string[]>;
  /** Deletes every key under the isolation's prefix: what a FLUSHALL or a restart without persistence does to it. */
  wipe(): Promise<void>;
  close(): Promise<void>;
  /** Drops the schema and deletes every key under the prefix. */
  destroy(): Promise<void>;
}

export function inspector(iso: Isolation): Inspector {
  const sql = createSql({ url: iso.databaseUrl, schema: iso.schema, poolSize: 2, connectTimeoutSeconds: 5 });
  const redis: RedisClient = iso.redisClusterNodes
    ? new Cluster(iso.redisClusterNodes.split(',').map((n) => ({ host: n.split(':')[0]!, port: Number(n.split(':')[1]) })), { scaleReads: 'master' })
    : new Redis(iso.redisUrl);
  const ready = async () => {
    if (redis instanceof Cluster && redis.status !== 'ready') await new Promise((r) => redis.once('ready', r));
  };
  const keys = async () => {
    await ready();
    const found: string[] = [];
    await scanAll(redis, `${iso.prefix}:*`, async (batch) => found.push(...batch), 1000);
    return found.sort();
  };
  return {
    sql,
    redis,
    keys,
    async wipe() {
      // One DEL per key: a cluster refuses a multi-key DEL across slots.
      await Promise.all((await keys()).map((k) => redis.del(k)));
    },
    async close() {
      redis.disconnect();
      await sql.end({ timeout: 5 });
    },
    async destroy() {
      await sql`DROP SCHEMA IF EXISTS ${sql(iso.schema)} CASCADE`;
      await this.wipe();
      await this.close();
    },
  };
}

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

/**
 * Sends JSON through fastify's inject and returns status and parsed body.
 * Authenticates with `key` (the admin key by default; null sends no
 * Authorization header).
 */
export async function call(app: App, method: Method, url: string, body?: unknown, key: string | null = ADMIN_KEY): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = key === null ? {} : { authorization: `Bearer ${key}` };
  if (typeof body === 'string') headers['content-type'] = 'application/json';
  const res = await app.inject({
    method,
    url,
    headers,
    ...(body === undefined ? {} : typeof body === 'string' ? { payload: body } : { payload: body as object }),
  });
  return { status: res.statusCode, body: res.body ? JSON.parse(res.body) : undefined };
}

/** Lists markets (PUT /markets/:symbol with the defaults) so trades on them are accepted. */
export async function listMarkets(app: App, ...symbols: string[]): Promise<void> {
  for (const symbol of symbols) {
    const res = await call(app, 'PUT', `/markets/${encodeURIComponent(symbol)}`, {});
    if (res.status !== 200) throw new Error(`listing ${symbol}: ${res.status} ${JSON.stringify(res.body)}`);
  }
}

export type Side = 'BUY' | 'SELL';
export type Res = { status: number; body: any };

/**
 * One engine in an isolation of its own, with what most tests do to it as a
 * client (as the admin key): the fixture the test files share. `close()` also
 * drops the isolation's schema and keys.
 */
export interface EngineFixture extends TestEngine {
  readonly iso: Isolation;
  /** Direct access to the isolation's PostgreSQL schema and Redis, for assertions. */
  readonly db: Inspector;
  /** The engine's Redis key names. */
  readonly keys: KeySpace;
  get(url: string, key?: string | null): Promise<Res>;
  post(url: string, body?: unknown, key?: string | null): Promise<Res>;
  put(url: string, body?: unknown, key?: string | null): Promise<Res>;
  /** Deposits, expecting 200; returns the body ({account_id, balance}). */
  deposit(accountId: number, amount: string | number): Promise<any>;
  /** Sends a trade; returns the answer whatever its status. */
  trade(accountId: number, symbol: string, side: Side, quantity: string | number, price: string | number, extra?: object): Promise<Res>;
  /** Posts a mark, expecting 200; returns the body ({symbol, price, liquidated, sweep}). */
  mark(symbol: string, price: string | number): Promise<any>;
  /** An account id no other test of the file uses. */
  freshAccount(): number;
  /** Starts real HTTP on 127.0.0.1 (once) and returns its base URL. */
  listen(): Promise<string>;
}

export interface FixtureOptions {
  /** Engine settings over the test defaults. */
  readonly env?: Record<string, string>;
  /** The isolation (default: a new one); the fixture owns it and removes it on close(). */
  readonly iso?: Isolation;
  readonly log?: Logger;
  /** The first id freshAccount() hands out (default 1). */
  readonly firstAccount?: number;
}

export async function startTestEngine(options: FixtureOptions = {}): Promise<EngineFixture> {
  const iso = options.iso ?? newIsolation();
  const db = inspector(iso);
  let t: TestEngine;
  try {
    t = await startEngine(iso, options.env, options.log);
  } catch (error) {
    await db.destroy();
    throw error;
  }
  let nextAccount = options.firstAccount ?? 1;
  let base: Promise<string> | null = null;
  const post = (url: string, body?: unknown, key?: string | null) => call(t.app, 'POST', url, body, key);
  return {
    ...t,
    iso,
    db,
    keys: t.engine.keys,
    get: (url, key) => call(t.app, 'GET', url, undefined, key),
    post,
    put: (url, body, key) => call(t.app, 'PUT', url, body, key),
    async deposit(accountId, amount) {
      const res = await post(`/accounts/${accountId}/deposit`, { amount });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return res.body;
    },
    trade: (accountId, symbol, side, quantity, price, extra = {}) => post('/trade', { account_id: accountId, symbol, side, quantity, price, ...extra }),
    async mark(symbol, price) {
      const res = await post('/mark-price', { symbol, price });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return res.body;
    },
    freshAccount: () => nextAccount++,
    listen: () => (base ??= t.app.listen({ host: '127.0.0.1', port: 0 })),
    async close() {
      try {
        await t.close();
      } finally {
        await db.destroy();
      }
    },
  };
}

/**
 * Waits until every engine heartbeating on the key prefix (at least `count`)
 * has beaten since all of them were there: each one's last heartbeat then
 * counted the others, which is what TRUSTED_PATH=auto decides on.
 */
export async function untilEnginesSeeEachOther(redis: RedisClient, keys: KeySpace, count: number): Promise<void> {
  const beats = async () => {
    const flat = await redis.zrange(keys.engines, 0, -1, 'WITHSCORES');
    const byId = new Map<string, number>();
    for (let i = 0; i < flat.length; i += 2) byId.set(flat[i]!, Number(flat[i + 1]));
    return byId;
  };
  const together = await until(beats, { ok: (b) => b.size >= count, what: `${count} engines heartbeating` });
  const allThere = Math.max(...together.values());
  await until(beats, {
    ok: (b) => [...together.keys()].every((id) => (b.get(id) ?? -Infinity) > allThere),
    what: 'a heartbeat of every engine after all were there',
  });
}

/**
 * Waits for `passes` recovery passes of an in-process engine, counting only
 * passes that start from now and get as far as the sweep of committed marks
 * (a pass while Redis does not answer stops before it, and does not count).
 */
export async function recoveryPasses(engine: Engine, passes: number, timeoutMs = 10_000): Promise<void> {
  const recovery = engine.recovery;
  const sweep = recovery.finishSweeps;
  if (!sweep) throw new Error('the engine has no recovery sweep');
  let finished = 0;
  recovery.finishSweeps = (all) => sweep(all).finally(() => void finished++);
  try {
    await until(() => finished >= passes, { timeoutMs, what: `${passes} recovery pass(es)` });
  } finally {
    recovery.finishSweeps = sweep;
  }
}
