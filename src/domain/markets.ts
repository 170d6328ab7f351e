/**
 * Markets and their guards, as pure functions: a market's
 * effective parameters, whether a trade may be booked on it (status, price
 * band), and whether a mark may move that far. No I/O.
 */
import { type Dec, ZERO } from './decimal.js';
import { EngineError } from './errors.js';
import type { Position, Side } from './margin.js';

export type MarketStatus = 'active' | 'reduce_only' | 'halted';
export type LiquidationMode = 'full' | 'partial';

export interface MarginTier {
  /** Upper notional bound of the tier; null on the last one. */
  readonly maxNotional: Dec | null;
  readonly initialMarginRate: Dec;
  readonly maintenanceMarginRate: Dec;
}

/** Every parameter a market has (its own where set, the engine's default otherwise). */
export interface MarketParams {
  readonly tiers: readonly MarginTier[];
  readonly tradePriceBand: Dec;
  readonly maxMarkMove: Dec;
  readonly liquidationMode: LiquidationMode;
  readonly liquidationFeeRate: Dec;
  readonly liquidationBuffer: Dec;
  readonly makerFeeRate: Dec;
  readonly takerFeeRate: Dec;
  readonly lotSize: Dec | null;
}

export interface Market extends MarketParams {
  readonly symbol: string;
  readonly status: MarketStatus;
}

/** The parameters a market sets for itself; the rest follow the defaults. */
export type MarketOverrides = Partial<MarketParams>;

export function effectiveMarket(symbol: string, status: MarketStatus, overrides: MarketOverrides, defaults: MarketParams): Market {
  return { symbol, status, ...defaults, ...stripUndefined(overrides) };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

/** True when a fill only shrinks an existing position, never past zero (what a reduce-only market allows). */
export function reducesWithoutFlip(position: Position | undefined, side: Side, quantity: Dec): boolean {
  if (!position || position.quantity.isZero()) return false;
  const opposite = side === 'BUY' ? position.quantity.isNeg() : position.quantity.isPos();
  return opposite && quantity.lte(position.quantity.abs());
}

/** The band around mark m: [m − band·m, m + band·m]. */
export function priceBand(mark: Dec, band: Dec): { min: Dec; max: Dec } {
  const width = mark.times(band);
  return { min: mark.minus(width), max: mark.plus(width) };
}

/**
 * Whether a trade may be booked on this market at all, before its margin is
 * checked: the market's status, then the price band around its mark (no
 * band while it has no mark, or when the band is 0). Returns the refusal, or
 * null. Reducing trades face the band too (a self-priced reduce would mint
 * money as surely as an opening one).
 */
export function tradeRefusal(market: Market, position: Position | undefined, side: Side, quantity: Dec, price: Dec, mark: Dec | undefined): EngineError | null {
  if (market.status === 'halted') {
    return new EngineError('MARKET_HALTED', `market ${market.symbol} is halted; no trades are booked`, { symbol: market.symbol });
  }
  if (market.status === 'reduce_only' && !reducesWithoutFlip(position, side, quantity)) {
    return new EngineError('MARKET_REDUCE_ONLY', `market ${market.symbol} is reduce-only; only trades that reduce a position without flipping it are booked`, {
      symbol: market.symbol,
    });
  }
  if (mark !== undefined && market.tradePriceBand.gt(ZERO)) {
    const { min, max } = priceBand(mark, market.tradePriceBand);
    if (price.lt(min) || price.gt(max)) {
      return new EngineError('PRICE_OUT_OF_BAND', `price ${price.toString()} is outside the band ${min.toString()}..${max.toString()} around the mark ${mark.toString()}`, {
        mark_price: mark.toString(),
        min_price: min.toString(),
        max_price: max.toString(),
      });
    }
  }
  return null;
}

/**
 * The mark move guard: a new mark further than `maxMove` (a fraction) from
 * the previous one is refused unless forced. No guard for a first mark or
 * when `maxMove` is 0.
 */
export function markMoveRefusal(symbol: string, previous: Dec | null, next: Dec, maxMove: Dec, force: boolean): EngineError | null {
  if (force || previous === null || !maxMove.gt(ZERO)) return null;
  const { min, max } = priceBand(previous, maxMove);
  if (next.gte(min) && next.lte(max)) return null;
  return new EngineError(
    'MARK_MOVE_TOO_LARGE',
    `mark ${next.toString()} moves ${symbol} more than ${maxMove.toString()} of its last mark ${previous.toString()}; send "force": true to post it anyway`,
    { symbol, mark_price: previous.toString(), max_mark_move: maxMove.toString(), min_price: min.toString(), max_price: max.toString() },
  );
}

/**
 * Checks a tier list: ascending `maxNotional`, null only on the
 * last; rates non-decreasing; maintenance ≤ initial in every tier. Returns
 * the first problem, or null.
 */
export function tierProblem(tiers: readonly MarginTier[]): string | null {
  if (tiers.length === 0) return 'must have at least one tier';
  for (const [i, t] of tiers.entries()) {
    const last = i === tiers.length - 1;
    if (last !== (t.maxNotional === null)) return last ? 'the last tier must have max_notional null' : `tier ${i + 1}: only the last tier may have max_notional null`;
    if (t.maintenanceMarginRate.gt(t.initialMarginRate)) return `tier ${i + 1}: maintenance_margin_rate must not exceed initial_margin_rate`;
    if (!t.maintenanceMarginRate.gt(ZERO)) return `tier ${i + 1}: maintenance_margin_rate must be greater than 0`;
    const prev = tiers[i - 1];
    if (prev) {
      if (t.maxNotional !== null && prev.maxNotional !== null && !t.maxNotional.gt(prev.maxNotional)) return `tier ${i + 1}: max_notional must rise`;
      if (t.initialMarginRate.lt(prev.initialMarginRate) || t.maintenanceMarginRate.lt(prev.maintenanceMarginRate)) return `tier ${i + 1}: rates must not fall`;
    }
  }
  return null;
}
