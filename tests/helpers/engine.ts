/**
 * A real engine (real Redis, real PostgreSQL) isolated in its own PostgreSQL
 * schema and Redis key prefix, with the fastify app built around it.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { inject } from 'vitest';
import { loadConfig, type Config } from '../../src/config.js';
import { createEngine, type Engine } from '../../src/engine.js';
import { buildApp, type App } from '../../src/http/app.js';
import { createSql, type Sql } from '../../src/store/postgres.js';

export interface Isolation {
  readonly schema: string;
  readonly prefix: string;
  readonly redisUrl: string;
  readonly databaseUrl: string;
}

export function newIsolation(): Isolation {
  const id = randomBytes(5).toString('hex');
  return { schema: `t_${id}`, prefix: `t_${id}`, redisUrl: inject('redisUrl'), databaseUrl: inject('databaseUrl') };
}

/** The admin key every test engine accepts (ADMIN_API_KEY): tests authenticate as an admin unless they say otherwise. */
export const ADMIN_KEY = 'test-admin-key-0123456789abcdefghijklmnopqrstuvwxyz';

export function testConfig(iso: Isolation, env: Record<string, string> = {}): Config {
  return loadConfig({
    ADMIN_API_KEY: ADMIN_KEY,
    REDIS_URL: iso.redisUrl,
    DATABASE_URL: iso.databaseUrl,
    DATABASE_SCHEMA: iso.schema,
    REDIS_KEY_PREFIX: iso.prefix,
    LOG_LEVEL: 'silent',
    ...env,
  });
}

export interface TestEngine {
  readonly engine: Engine;
  readonly app: App;
  readonly config: Config;
  close(): Promise<void>;
}

export async function startEngine(iso: Isolation, env: Record<string, string> = {}): Promise<TestEngine> {
  const config = testConfig(iso, env);
  const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
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
  readonly redis: Redis;
  close(): Promise<void>;
  /** Drops the schema and deletes every key under the prefix. */
  destroy(): Promise<void>;
}

export function inspector(iso: Isolation): Inspector {
  const sql = createSql({ url: iso.databaseUrl, schema: iso.schema, poolSize: 2, connectTimeoutSeconds: 5 });
  const redis = new Redis(iso.redisUrl);
  return {
    sql,
    redis,
    async close() {
      redis.disconnect();
      await sql.end({ timeout: 5 });
    },
    async destroy() {
      await sql`DROP SCHEMA IF EXISTS ${sql(iso.schema)} CASCADE`;
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${iso.prefix}:*`, 'COUNT', 1000);
        if (keys.length > 0) await redis.del(...keys);
        cursor = next;
      } while (cursor !== '0');
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
