/**
 * Mark prices: the operator's tick is recorded in PostgreSQL, published to
 * Redis, and then every account it endangers is liquidated before the
 * response (so `liquidated` lists committed liquidations).
 */
import type { Redis } from 'ioredis';
import { type Dec, str } from '../domain/decimal.js';
import { DependencyUnavailable } from '../domain/errors.js';
import { storeMark, type MarkBook } from '../store/accounts.js';
import { upsertMark } from '../store/marks.js';
import type { Sql } from '../store/postgres.js';
import type { KeySpace } from '../store/redis.js';
import { endangeredBy, type RiskKeys } from '../store/risk-index.js';
import { postgresCall, redisCall } from './dependencies.js';
import type { LiquidationService } from './liquidation.js';

export interface MarkResult {
  readonly symbol: string;
  readonly price: string;
  readonly liquidated: number[];
}

export interface MarksDeps {
  readonly redis: Redis;
  readonly sql: Sql;
  readonly keys: KeySpace;
  readonly risk: RiskKeys;
  /** This process's cached marks: told at once when a post here moves them. */
  readonly markBook: MarkBook;
  readonly liquidation: LiquidationService;
  readonly timeoutMs: number;
  /** Its circuit breaker says whether PostgreSQL is known to be down. */
  readonly committer: { readonly unavailable: boolean };
  /** Resolves once Redis holds what this process acknowledged; a 503 if Redis does not get there in time (see AccountGate.applied). */
  readonly applied: (accountId?: number) => Promise<void>;
}

export class MarksService {
  constructor(private readonly deps: MarksDeps) {}

  async setMark(symbol: string, price: Dec): Promise<MarkResult> {
    const { redis, sql, keys, risk, timeoutMs, committer, liquidation } = this.deps;
    if (committer.unavailable) throw new DependencyUnavailable('postgres');
    // Every trade acknowledged before this tick is in Redis, and in the risk
    // index the tick reads, before the mark moves: the tick itself checks
    // them. (If Redis cannot take them, this is a 503 with nothing changed.)
    await this.deps.applied();
    const version = await postgresCall(() => upsertMark(sql, symbol, str(price)), timeoutMs);
    // Publish the mark, then look for the accounts it endangers: an account
    // indexed after this read sees the new mark when it re-checks itself.
    // One round trip: the three go out together and Redis runs them in order.
    const endangered = await redisCall(async () => {
      const [epoch, , candidates] = await Promise.all([
        storeMark(redis, keys, symbol, str(price), version),
        redis.incr(risk.rev),
        endangeredBy(redis, risk, symbol, price),
      ]);
      if (epoch > 0) this.deps.markBook.moved(epoch);
      return candidates;
    });
    const liquidated = await liquidation.afterTick(symbol, price, endangered);
    return { symbol, price: str(price), liquidated };
  }
}
