/**
 * The market registry: listing and changing markets, and their
 * views (parameters, mark, open interest, holders, fees) and history.
 *
 * A change commits in PostgreSQL, then reaches Redis (where the hot path
 * reads it, with the marks). Redis must answer before anything is committed;
 * if it fails in between, the change is committed and the answer is 202:
 * recovery publishes it within a watch interval of Redis answering again.
 */
import type { MarketEventResponse, MarketResponse } from '../http/schemas.js';
import type { Logger } from 'pino';
import { D, type Dec, str, ZERO } from '../domain/decimal.js';
import { EngineError, marketNotFound } from '../domain/errors.js';
import { effectiveMarket, type Market, type MarketParams, type MarketStatus } from '../domain/markets.js';
import { readAccounts } from '../store/account-state.js';
import type { MarkBook } from '../store/mark-book.js';
import {
  definitionOf,
  feeSums,
  marketApplied,
  marketEventPage,
  marketRows,
  overridesOf,
  publishMarket,
  upsertMarket,
  type MarketRow,
  type ParamsJson,
} from '../store/markets.js';
import type { Sql } from '../store/postgres.js';
import type { KeySpace, RedisClient } from '../store/redis.js';
import { accountOf, type RiskKeys } from '../store/risk-index.js';
import { postgresCall, redisCall } from './dependencies.js';
import type { LiquidationService } from './liquidation.js';

/** A market as answered (its type is the wire schema's: the service builds that shape). */
export type MarketView = MarketResponse;

export type MarketEventView = MarketEventResponse;

export interface MarketsDeps {
  readonly redis: RedisClient;
  readonly sql: Sql;
  readonly keys: KeySpace;
  readonly risk: RiskKeys;
  readonly markBook: MarkBook;
  readonly defaults: MarketParams;
  readonly timeoutMs: number;
  /** Resolves once Redis holds what this process acknowledged (see AccountGate.applied). */
  readonly applied: (accountId?: number) => Promise<void>;
  readonly log: Logger;
  /** Re-checks a market's holders after its risk parameters changed. */
  readonly liquidation?: Pick<LiquidationService, 'afterMarketChange'>;
}

/** The parameters whose change moves holders' margins and liquidation thresholds. */
const RISK_PARAMS = ['tiers'] as const;

/** Holders read per command when summing open interest. */
const CHUNK = 500;

export class MarketsService {
  /** Fees of every trade in transactions before `horizon`, per symbol: they never change, so each is summed once (see feeSums). */
  private fees: { horizon: string; settled: Map<string, Dec> } = { horizon: '0', settled: new Map() };
  /** The running fee read: reads queue on it, so two never add the same settled rows. */
  private feeRead: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: MarketsDeps) {}

  /** Creates or changes a market; `applied` is false when it is committed but Redis has yet to take it (202). */
  async put(symbol: string, status: MarketStatus | undefined, params: ParamsJson, actor: string | null): Promise<{ view: MarketView; created: boolean; applied: boolean }> {
    const { redis, sql, keys, markBook, timeoutMs, log } = this.deps;
    await redisCall(() => markBook.snapshot());
    const { row, created } = await postgresCall(
      () =>
        upsertMarket(sql, symbol, status, params, actor, (after) => {
          // Checked on the merged parameters: a maker rebate may not exceed the taker fee.
          const m = this.marketOf(after);
          if (m.makerFeeRate.neg().gt(m.takerFeeRate)) {
            throw new EngineError('VALIDATION_ERROR', 'a maker rebate (-maker_fee_rate) may not exceed taker_fee_rate', {
              fields: [{ field: 'body.maker_fee_rate', message: 'rebate exceeds taker_fee_rate' }],
            });
          }
        }),
      timeoutMs,
    );
    const version = Number(row.version);
    let applied = true;
    try {
      const { epochs } = await redisCall(() => publishMarket(redis, keys, symbol, null, definitionOf(row)));
      markBook.moved(epochs);
      await postgresCall(() => marketApplied(sql, symbol, version), timeoutMs);
    } catch (error) {
      markBook.distrust();
      applied = false;
      log.warn({ symbol, version, err: (error as Error).message }, 'market change committed but not yet in redis; recovery will publish it');
    }
    log.info({ symbol, created, status: row.status, changes: { ...(status ? { status } : {}), ...params }, actor }, created ? 'market listed' : 'market changed');
    // New tiers (or liquidation parameters) move every holder's margin: their
    // thresholds are computed again, and those now under maintenance are
    // liquidated before the answer.
    if (applied && !created && RISK_PARAMS.some((p) => params[p] !== undefined)) {
      await this.deps.liquidation?.afterMarketChange(symbol, this.marketOf(row).tiers.length, actor);
    }
    return { view: (await this.views([row]))[0]!, created, applied };
  }

  async list(): Promise<{ markets: MarketView[] }> {
    const rows = await postgresCall(() => marketRows(this.deps.sql), this.deps.timeoutMs);
    return { markets: await this.views(rows) };
  }

  async get(symbol: string): Promise<MarketView> {
    const [row] = await postgresCall(() => marketRows(this.deps.sql, symbol), this.deps.timeoutMs);
    if (!row) throw marketNotFound(symbol);
    return (await this.views([row]))[0]!;
  }

  async history(symbol: string, limit: number, cursor: number | null): Promise<{ events: MarketEventView[]; next_cursor: string | null }> {
    const { sql, timeoutMs } = this.deps;
    const [[row], page] = await postgresCall(() => Promise.all([marketRows(sql, symbol), marketEventPage(sql, symbol, limit, cursor)]), timeoutMs);
    if (!row) throw marketNotFound(symbol);
    return {
      events: page.events.map((e) => ({
        event_id: Number(e.event_id),
        type: e.kind,
        price: e.price === null ? null : new D(e.price).toString(),
        previous_price: e.previous_price === null ? null : new D(e.previous_price).toString(),
        forced: e.forced,
        changes: e.changes,
        actor: e.actor,
        created_at: e.created_at.toISOString(),
      })),
      next_cursor: page.nextCursor === null ? null : String(page.nextCursor),
    };
  }

  private marketOf(row: MarketRow): Market {
    return effectiveMarket(row.symbol, row.status, overridesOf(row.params), this.deps.defaults);
  }

  /** The views of these markets: the marks read once, open interest summed in one pass over their holders. */
  private async views(rows: readonly MarketRow[]): Promise<MarketView[]> {
    const [marks, interest, fees] = await Promise.all([
      redisCall(() => this.deps.markBook.current()),
      this.openInterest(rows.map((r) => r.symbol)),
      this.feesCollected(),
    ]);
    return rows.map((row) => {
      const m = this.marketOf(row);
      const mark = marks.get(row.symbol);
      const oi = interest.get(row.symbol)!;
      return {
        symbol: m.symbol,
        status: m.status,
        tiers: m.tiers.map((t) => ({
          max_notional: t.maxNotional === null ? null : str(t.maxNotional),
          initial_margin_rate: str(t.initialMarginRate),
          maintenance_margin_rate: str(t.maintenanceMarginRate),
        })),
        trade_price_band: str(m.tradePriceBand),
        max_mark_move: str(m.maxMarkMove),
        liquidation_mode: m.liquidationMode,
        liquidation_fee_rate: str(m.liquidationFeeRate),
        liquidation_buffer: str(m.liquidationBuffer),
        maker_fee_rate: str(m.makerFeeRate),
        taker_fee_rate: str(m.takerFeeRate),
        lot_size: m.lotSize === null ? null : str(m.lotSize),
        mark_price: mark === undefined ? null : str(mark),
        open_interest: { long: str(oi.long), short: str(oi.short) },
        holders: oi.holders,
        fees_collected: str(fees.get(row.symbol) ?? ZERO),
        created_at: row.created_at.toISOString(),
        updated_at: row.updated_at.toISOString(),
      };
    });
  }

  /**
   * Every trading fee booked, per symbol, exactly (maker rebates count
   * negative): the settled part kept from the last read plus the ledger's
   * trade rows since, so a read costs the rows booked since the last one.
   */
  private feesCollected(): Promise<Map<string, Dec>> {
    const read = this.feeRead.then(async () => {
      const { horizon, settled, recent } = await postgresCall(() => feeSums(this.deps.sql, this.fees.horizon), this.deps.timeoutMs);
      const kept = new Map(this.fees.settled);
      for (const [symbol, sum] of settled) kept.set(symbol, (kept.get(symbol) ?? ZERO).plus(sum));
      this.fees = { horizon, settled: kept };
      const now = new Map(kept);
      for (const [symbol, sum] of recent) now.set(symbol, (now.get(symbol) ?? ZERO).plus(sum));
      return now;
    });
    this.feeRead = read.catch(() => undefined);
    return read;
  }

  /**
   * Open interest per symbol, summed exactly from the holders' positions: the
   * risk index lists every holder of a symbol by side (read for CHUNK
   * symbols per round trip), and each holder's state is read once, in
   * chunks, whatever the number of these symbols it holds. O(holders) per
   * read; nothing on the trade path.
   */
  private async openInterest(symbols: readonly string[]): Promise<Map<string, { long: Dec; short: Dec; holders: number }>> {
    const { redis, keys, risk } = this.deps;
    await this.deps.applied();
    const out = new Map(symbols.map((s) => [s, { long: ZERO, short: ZERO, holders: 0 }]));
    const holders = new Set<number>();
    for (let i = 0; i < symbols.length; i += CHUNK) {
      const chunk = symbols.slice(i, i + CHUNK);
      // One pipeline per shard (its keys share the shard's slot), the shards in parallel.
      const byShard = await redisCall(() =>
        Promise.all(
          risk.shards.map(async (rk) => {
            const p = redis.pipeline();
            for (const s of chunk) p.zrange(rk.long(s), 0, -1).zrange(rk.short(s), 0, -1);
            return (await p.exec()) ?? [];
          }),
        ),
      );
      for (const [j, s] of chunk.entries()) {
        const ids = new Set<number>();
        for (const replies of byShard) {
          for (const reply of [replies[2 * j], replies[2 * j + 1]]) {
            const [error, members] = reply ?? [new Error('missing pipeline reply'), []];
            if (error) throw error;
            for (const m of members as string[]) ids.add(accountOf(m));
          }
        }
        out.get(s)!.holders = ids.size;
        for (const id of ids) holders.add(id);
      }
    }
    const ids = [...holders];
    for (let i = 0; i < ids.length; i += CHUNK) {
      const accounts = await redisCall(() => readAccounts(redis, keys, ids.slice(i, i + CHUNK)));
      for (const a of accounts) {
        for (const [symbol, p] of a.positions) {
          const sums = out.get(symbol);
          if (sums === undefined) continue;
          if (p.quantity.isPos()) sums.long = sums.long.plus(p.quantity);
          else sums.short = sums.short.minus(p.quantity);
        }
      }
    }
    return out;
  }
}
