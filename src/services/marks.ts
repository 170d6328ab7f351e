/**
 * Mark prices: a mark is all or nothing.
 *
 * 1. Before anything is written, Redis must answer (and hold every trade
 *    this process acknowledged): a mark that could not be applied is refused
 *    with nothing changed anywhere.
 * 2. One PostgreSQL statement lists the market if the symbol is new, checks
 *    the move guard against the mark it replaces, and records the mark and
 *    its history row. This is the commit point; a refusal writes nothing.
 * 3. The sweep: publish the mark to Redis, liquidate every account it
 *    endangers, then record the sweep as finished (mark_prices.swept_version).
 *
 * A committed mark is always swept: if step 3 fails (a store failed, or the
 * engine died), the answer is 202 (committed, sweep pending) and recovery
 * finishes it, at start-up before the engine reports ready, and from the
 * recovery watch while it runs.
 */
import type { Logger } from 'pino';
import { D, type Dec, str } from '../domain/decimal.js';
import { DependencyUnavailable, OutcomeUnknown } from '../domain/errors.js';
import { markMoveRefusal, type MarketParams } from '../domain/markets.js';
import { bootMarkerPresent, RedisStateLost, type MarkBook } from '../store/mark-book.js';
import { commitMark, marketApplied, markSwept, pendingMarkets, pendingMarks, publishMarket } from '../store/markets.js';
import type { Sql } from '../store/postgres.js';
import type { KeySpace, RedisClient } from '../store/redis.js';
import type { RiskKeys } from '../store/risk-index.js';
import { postgresCall, redisCall, TimeoutError } from './dependencies.js';
import type { LiquidationService } from './liquidation.js';
import type { MarginCallService } from './margin-calls.js';

export interface MarkResult {
  readonly symbol: string;
  readonly price: string;
  /** Accounts this tick liquidated (so far, when the sweep is pending). */
  readonly liquidated: number[];
  /** 'complete': every endangered account was checked; 'pending': committed, and recovery finishes the sweep. */
  readonly sweep: 'complete' | 'pending';
}

export interface MarksDeps {
  readonly redis: RedisClient;
  readonly sql: Sql;
  /** A pool whose commits skip the WAL flush: marks and their sweep records (see commitMark). */
  readonly marksSql: Sql;
  readonly keys: KeySpace;
  readonly risk: RiskKeys;
  /** This process's cached marks: told at once when a post here moves them. */
  readonly markBook: MarkBook;
  readonly liquidation: LiquidationService;
  readonly marginCalls: MarginCallService;
  readonly defaults: MarketParams;
  readonly timeoutMs: number;
  /** Its circuit breaker says whether PostgreSQL is known to be down. */
  readonly committer: { readonly unavailable: boolean };
  /** Resolves once Redis holds what this process acknowledged; a 503 if Redis does not get there in time (see AccountGate.applied). */
  readonly applied: (accountId?: number) => Promise<void>;
  readonly log: Logger;
}

/** Failures after which a statement may have committed: it was sent, and the answer never came. */
const MAYBE_SENT = new Set(['CONNECTION_CLOSED', 'CONNECTION_DESTROYED', 'ECONNRESET', 'EPIPE']);
function outcomeUnknown(cause: unknown): boolean {
  return cause instanceof TimeoutError || (cause instanceof Error && MAYBE_SENT.has(String((cause as { code?: unknown }).code)));
}

/** A sweep unfinished for this long is taken over by any process's recovery watch (its own process has probably died). */
const ORPHANED_SWEEP_MS = 2000;

export class MarksService {
  /** Symbols whose sweep failed in this process: the next recovery pass finishes them whatever their age. */
  private readonly unfinished = new Set<string>();

  constructor(private readonly deps: MarksDeps) {}

  /** Sweeps this process knows are unfinished (the engine is not ready while there are any). */
  get pendingSweeps(): number {
    return this.unfinished.size;
  }

  async setMark(symbol: string, price: Dec, options: { actor: string | null; force: boolean }): Promise<MarkResult> {
    const { marksSql, timeoutMs, committer, defaults } = this.deps;
    if (committer.unavailable) throw new DependencyUnavailable('postgres');
    // Every trade acknowledged before this tick is in Redis, and in the risk
    // index the tick reads, before the mark moves: the tick itself checks them.
    await this.deps.applied();
    // Redis must answer, holding the engine's state, before anything is committed.
    if (!(await redisCall(() => bootMarkerPresent(this.deps.redis, this.deps.keys)))) throw new RedisStateLost();
    const priceText = str(price);
    let committed;
    const signal: { onAbort?: () => void } = {};
    try {
      committed = await postgresCall(() => commitMark(marksSql, symbol, priceText, options.actor, options.force, str(defaults.maxMarkMove), signal), timeoutMs);
    } catch (error) {
      if (error instanceof DependencyUnavailable && error.cause instanceof TimeoutError) signal.onAbort?.();
      // PostgreSQL stopped answering after the statement went out: the mark
      // may yet commit, and then it is swept like any other (recovery takes
      // orphaned sweeps). The answer says so rather than "nothing changed".
      if (error instanceof DependencyUnavailable && outcomeUnknown(error.cause)) {
        this.deps.log.warn({ symbol }, 'mark commit outcome unknown; recovery sweeps it if it committed');
        // The recovery watch looks at this symbol at once, not only after the orphan delay.
        this.unfinished.add(symbol);
        throw new OutcomeUnknown('postgres did not confirm the mark; if it was committed, recovery applies it and liquidates what it endangers', error.cause);
      }
      throw error;
    }
    if (!committed.committed) {
      // Refused by the guard inside the statement: nothing was written. The same rule, in decimal, words the answer.
      throw (
        markMoveRefusal(symbol, new D(committed.previous), price, new D(committed.maxMove), false) ??
        new Error(`mark guard disagreement on ${symbol}: postgresql refused ${priceText} against ${committed.previous}`)
      );
    }
    const { liquidated, complete } = await this.sweep(symbol, priceText, committed.version, committed.listed, options.actor, committed.previous);
    if (committed.listed) this.deps.log.info({ symbol, actor: options.actor }, 'market listed by its first mark');
    return { symbol, price: priceText, liquidated, sweep: complete ? 'complete' : 'pending' };
  }

  /**
   * Publishes a committed mark (and the market it listed) to Redis,
   * liquidates what it endangers, and records the sweep as finished. Never
   * throws: a failure leaves the sweep pending for recovery.
   */
  private async sweep(
    symbol: string,
    priceText: string,
    version: number,
    listed: { json: string; version: number } | null,
    actor: string | null,
    /** The mark the sweep's margin calls are judged from (null: the symbol's first, or none swept yet). */
    fromText: string | null,
  ): Promise<{ liquidated: number[]; complete: boolean }> {
    const { redis, marksSql, keys, markBook, liquidation, marginCalls, timeoutMs } = this.deps;
    const price = new D(priceText);
    const tick = { symbol, from: fromText === null ? null : new D(fromText), to: price, version };
    const liquidated: number[] = [];
    try {
      // Publish, then look for the accounts it endangers, in one script call
      // per shard (all in parallel): an account of a shard indexed after its
      // read sees the new mark when it re-checks itself. The sweep counts as
      // finished only once every shard answered (markSwept, below). The
      // accounts it may take below initial margin are read beside it.
      const { endangered, entering } = await redisCall(async () => {
        const published = publishMarket(redis, keys, symbol, { price: priceText, version }, listed, price);
        const candidates = marginCalls.candidates(tick);
        const [done, read, market] = await Promise.all([published, candidates.read, candidates.market]);
        markBook.moved(done.epochs);
        return { endangered: done.endangered, entering: await marginCalls.confirm(tick, market, candidates.guess, read) };
      });
      // Margin calls (with status liquidatable for the endangered) are recorded before anyone is liquidated.
      const calls = await marginCalls.afterTick(tick, [...endangered, ...entering]);
      await liquidation.afterTick(symbol, price, endangered, actor, liquidated, calls);
      // Recorded before the answer, so a 200 means reconcile finds nothing
      // pending. (If recording fails, the sweep is pending and simply runs
      // again, finding nothing left to do.)
      await postgresCall(() => markSwept(marksSql, symbol, version, listed?.version ?? null), timeoutMs);
      this.unfinished.delete(symbol);
      return { liquidated: liquidated.sort((a, b) => a - b), complete: true };
    } catch (error) {
      // Redis may or may not hold the mark now: nothing cached is trusted until it is read again.
      markBook.distrust();
      this.unfinished.add(symbol);
      this.deps.log.warn({ symbol, version, err: (error as Error).message }, 'mark committed but its sweep is unfinished; recovery will finish it');
      return { liquidated: liquidated.sort((a, b) => a - b), complete: false };
    }
  }

  /**
   * Finishes what committed marks and market changes left undone: publishes
   * market definitions Redis may lack, and sweeps every mark whose sweep did
   * not finish (this process's, and any unfinished for ORPHANED_SWEEP_MS;
   * with `all`, every one: at start-up). Returns how many sweeps remain
   * unfinished.
   */
  async finishPending(all: boolean): Promise<number> {
    const { redis, sql, keys, markBook, timeoutMs } = this.deps;
    for (const m of await postgresCall(() => pendingMarkets(sql), timeoutMs)) {
      const { epochs } = await redisCall(() => publishMarket(redis, keys, m.symbol, null, { json: m.json, version: m.version }));
      markBook.moved(epochs);
      await postgresCall(() => marketApplied(sql, m.symbol, m.version), timeoutMs);
    }
    const marks = await postgresCall(() => pendingMarks(sql, all ? 0 : ORPHANED_SWEEP_MS, [...this.unfinished]), timeoutMs);
    // Finished meanwhile (by another process, or a later tick here).
    for (const symbol of this.unfinished) if (!marks.some((m) => m.symbol === symbol)) this.unfinished.delete(symbol);
    let left = 0;
    for (const m of marks) {
      const { liquidated, complete } = await this.sweep(m.symbol, m.price, m.version, null, m.actor, m.sweptPrice);
      if (complete) this.deps.log.info({ symbol: m.symbol, version: m.version, liquidated: liquidated.length }, 'finished the sweep of a committed mark');
      else left++;
    }
    return left;
  }
}
