/**
 * Pure liquidation math: when an account must be liquidated, what closing it
 * out books, and each position's threshold mark (the mark at which the
 * account would fall below maintenance, the other marks held fixed).
 */
import { D, type Dec, ZERO, divRound } from './decimal.js';
import { applyFill, marginTotals, remember, type AccountState, type MarginRates, type MarginTotals, type Marks, type Position, type Side } from './margin.js';

/** Equity strictly below maintenance margin, with positions open. Exactly at maintenance is not liquidated. */
export function isLiquidatable(state: AccountState, marks: Marks, rates: MarginRates): boolean {
  if (state.positions.size === 0) return false;
  const m = marginTotals(state, marks, rates);
  return m.equity.lt(m.maintenanceMargin);
}

export interface ClosingFill {
  readonly symbol: string;
  readonly side: Side;
  /** Unsigned: the position's full size. */
  readonly quantity: Dec;
  /** The mark (or, for a symbol with no mark yet, the entry price the position is valued at). */
  readonly price: Dec;
  readonly realisedPnl: Dec;
  /** The position closed, as it was. */
  readonly positionQuantity: Dec;
  readonly entryPrice: Dec;
  /** Balance after this fill. */
  readonly balanceAfter: Dec;
}

export interface LiquidationPlan {
  readonly equity: Dec;
  readonly maintenanceMargin: Dec;
  readonly fills: readonly ClosingFill[];
  readonly realisedPnl: Dec;
  /** Deficit left after closing everything, covered by the insurance fund (≥ 0). */
  readonly shortfall: Dec;
  readonly balanceAfter: Dec;
}

/**
 * Closes every position at its mark. A negative balance afterwards is set to
 * zero and the deficit becomes the shortfall. Returns null when the account
 * is not liquidatable at these marks.
 */
export function planLiquidation(state: AccountState, marks: Marks, rates: MarginRates): LiquidationPlan | null {
  if (!isLiquidatable(state, marks, rates)) return null;
  const totals = marginTotals(state, marks, rates);
  let balance = state.balance;
  let realised = ZERO;
  const fills: ClosingFill[] = [];
  const symbols = [...state.positions.keys()].sort();
  for (const symbol of symbols) {
    const position = state.positions.get(symbol)!;
    const price = marks.get(symbol) ?? position.entryPrice;
    const side: Side = position.quantity.isPos() ? 'SELL' : 'BUY';
    const quantity = position.quantity.abs();
    const result = applyFill(position, side, quantity, price);
    balance = balance.plus(result.realisedPnl);
    realised = realised.plus(result.realisedPnl);
    fills.push({
      symbol,
      side,
      quantity,
      price,
      realisedPnl: result.realisedPnl,
      positionQuantity: position.quantity,
      entryPrice: position.entryPrice,
      balanceAfter: balance,
    });
  }
  const shortfall = balance.isNeg() ? balance.neg() : ZERO;
  return {
    equity: totals.equity,
    maintenanceMargin: totals.maintenanceMargin,
    fills,
    realisedPnl: realised,
    shortfall,
    balanceAfter: balance.isNeg() ? ZERO : balance,
  };
}

/**
 * Where one position's mark would tip the account under maintenance:
 * - `long`: liquidatable when the mark falls below `price`;
 * - `short`: liquidatable when the mark rises above `price`;
 * `price` null means never (on this symbol alone), 'always' means already.
 *
 * Held as the exact quotient numerator / slope; `price` divides (exactly,
 * 18 places) only when asked, and `approx()` gives the double the risk index
 * stores, within 1.5 units in the last place (each operand is converted with
 * one rounding, then divided with one more).
 */
export class Threshold {
  private exact: Dec | undefined;

  constructor(
    readonly side: 'long' | 'short',
    /** q·e − C */
    readonly numerator: Dec,
    /** q − r·|q| (zero: the mark does not move this account's cushion) */
    readonly slope: Dec,
    /** The slope as the nearest double, when the caller has it. */
    private readonly slopeDouble = Number(slope.toString()),
  ) {}

  get price(): Dec | null | 'always' {
    if (this.slope.isZero()) return this.numerator.isPos() ? 'always' : null;
    return (this.exact ??= divRound(this.numerator, this.slope));
  }

  /** The threshold as a double (see above), or 'always' / null like `price`. */
  approx(): number | null | 'always' {
    if (this.slope.isZero()) return this.numerator.isPos() ? 'always' : null;
    return Number(this.numerator.toString()) / this.slopeDouble;
  }
}

/**
 * With the other marks fixed, equity − maintenance is linear in this symbol's
 * mark m: f(m) = C − q·e + m·(q − r·|q|), where C is the rest of the account
 * (balance plus the other positions' PnL less their maintenance). The
 * account is liquidatable when f(m) < 0, so the threshold is (q·e − C) / (q − r·|q|).
 *
 * `totals` may be passed when already taken on this state at these marks
 * (the pre-trade check's): each position's part of f is then its PnL less r
 * times its notional, and the sum of all parts is equity − maintenance.
 */
export function liquidationThresholds(state: AccountState, marks: Marks, rates: MarginRates, totals?: MarginTotals): Map<string, Threshold> {
  const r = rates.maintenance;
  const { equity, maintenanceMargin, terms } = totals ?? marginTotals(state, marks, rates);
  const total = equity.minus(maintenanceMargin); // f at the current marks
  const out = new Map<string, Threshold>();
  for (const [symbol, p] of state.positions) {
    // C = total − (pnl − r·notional), so the numerator q·e − C is k − total
    // with k = q·e + pnl − r·notional, which depends on this position alone.
    const { cost, slope, slopeDouble } = fixedParts(p, r);
    out.set(symbol, new Threshold(p.quantity.isPos() ? 'long' : 'short', ownPart(terms.get(symbol)!, cost, r).minus(total), slope, slopeDouble));
  }
  return out;
}

/**
 * k = q·e + pnl − r·notional for one valuation of one position, remembered
 * per valuation object (margin.ts keeps one per position and price), so a
 * trade only computes it for the position it changed.
 */
const OWN = Symbol('own');
type Own = { readonly rate: Dec; readonly cost: Dec; readonly k: Dec };

function ownPart(term: { readonly pnl: Dec; readonly notional: Dec }, cost: Dec, r: Dec): Dec {
  const known = (term as { [OWN]?: Own })[OWN];
  if (known !== undefined && known.rate === r && known.cost === cost) return known.k;
  return remember(term, OWN, { rate: r, cost, k: cost.plus(term.pnl.minus(term.notional.times(r))) }).k;
}

const ONE = new D(1);

/**
 * The parts of a position's threshold that depend on the position alone
 * (and the maintenance rate): q·e and the slope q − r·|q|, which is q·(1 − r)
 * for a long and q·(1 + r) for a short. Remembered per position object, like
 * the valuations in margin.ts.
 */
const FIXED = Symbol('fixed');
type Fixed = { readonly rate: Dec; readonly cost: Dec; readonly slope: Dec; readonly slopeDouble: number };

function fixedParts(p: Position, r: Dec): { readonly cost: Dec; readonly slope: Dec; readonly slopeDouble: number } {
  const known = (p as { [FIXED]?: Fixed })[FIXED];
  if (known !== undefined && known.rate === r) return known;
  const slope = p.quantity.times(p.quantity.isPos() ? ONE.minus(r) : ONE.plus(r));
  const parts = { rate: r, cost: p.quantity.times(p.entryPrice), slope, slopeDouble: Number(slope.toString()) };
  return remember(p, FIXED, parts);
}
