/**
 * Mark prices: the operator's tick is recorded in PostgreSQL, then published
 * to Redis, where every margin computation reads it.
 */
import type { Redis } from 'ioredis';
import { type Dec, str } from '../domain/decimal.js';
import { DependencyUnavailable } from '../domain/errors.js';
import { storeMark } from '../store/accounts.js';
import { upsertMark } from '../store/marks.js';
import type { Sql } from '../store/postgres.js';
import type { KeySpace } from '../store/redis.js';
import { postgresCall, redisCall } from './dependencies.js';

export interface MarkResult {
  readonly symbol: string;
  readonly price: string;
  readonly liquidated: number[];
}

export interface MarksDeps {
  readonly redis: Redis;
  readonly sql: Sql;
  readonly keys: KeySpace;
  readonly timeoutMs: number;
  /** Its circuit breaker says whether PostgreSQL is known to be down. */
  readonly committer: { readonly unavailable: boolean };
}

export class MarksService {
  constructor(private readonly deps: MarksDeps) {}

  async setMark(symbol: string, price: Dec): Promise<MarkResult> {
    const { redis, sql, keys, timeoutMs, committer } = this.deps;
    if (committer.unavailable) throw new DependencyUnavailable('postgres');
    const version = await postgresCall(() => upsertMark(sql, symbol, str(price)), timeoutMs);
    await redisCall(() => storeMark(redis, keys, symbol, str(price), version));
    return { symbol, price: str(price), liquidated: [] };
  }
}
