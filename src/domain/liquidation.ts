/**
 * Pure liquidation math: when an account must be liquidated, what
 * liquidating it books (every position closed, or, in partial mode, slices
 * sized to restore a buffer over maintenance), the liquidation fee, the
 * shortfall, and each position's threshold mark (the mark at which the
 * account would fall below maintenance, the other marks held fixed).
 */
import { D, type Dec, ZERO, divRound } from './decimal.js';
import {
  applyFill,
  marginTotals,
  type AccountState,
  type MarginRules,
  type MarginTotals,
  type Marks,
  type Position,
  type PositionTerm,
  type Side,
} from './margin.js';
import { remember } from './remember.js';
import { maintenanceAt, type TierBand } from './tiers.js';

/**
 * Equity strictly below maintenance margin, with positions open; or no
 * position and a negative balance (a reducing trade at a bad price can
 * leave one): nothing to close, the deficit is a shortfall. Exactly at
 * maintenance is not liquidated.
 */
export function isLiquidatable(state: AccountState, marks: Marks, rules: MarginRules): boolean {
  if (state.positions.size === 0) return state.balance.isNeg();
  const m = marginTotals(state, marks, rules);
  return m.equity.lt(m.maintenanceMargin);
}

export interface ClosingFill {
  readonly symbol: string;
  readonly side: Side;
  /** Unsigned: the amount closed (the whole position, or a slice of it). */
  readonly quantity: Dec;
  /** The mark (or, for a symbol with no mark yet, the entry price the position is valued at). */
  readonly price: Dec;
  readonly realisedPnl: Dec;
  /** The amount closed, signed like the position it came from. */
  readonly closedQuantity: Dec;
  readonly entryPrice: Dec;
  /** What is left of the position (undefined: closed). */
  readonly remaining: Position | undefined;
  /** Balance after this fill (before the fee). */
  readonly balanceAfter: Dec;
}

export type LiquidationMode = 'full' | 'partial';

export interface LiquidationPlan {
  /** 'partial' when positions are left open; a partial liquidation that closes everything is 'full'. */
  readonly mode: LiquidationMode;
  readonly equity: Dec;
  readonly maintenanceMargin: Dec;
  readonly fills: readonly ClosingFill[];
  readonly realisedPnl: Dec;
  /** The liquidation fee charged (≤ what is left of a positive balance after closing). */
  readonly fee: Dec;
  /** Deficit left after closing everything, paid by the insurance fund as far as it can (≥ 0). */
  readonly shortfall: Dec;
  readonly balanceAfter: Dec;
  /** The positions left open (empty in full mode). */
  readonly positionsAfter: ReadonlyMap<string, Position>;
}

const DEFAULT_LOT = new D('1e-8');
const ONE = new D(1);

/**
 * What liquidating the account books, or null when it is not liquidatable
 * at these marks.
 *
 * Full (a market not in partial mode, or equity ≤ 0): every position closed
 * at its mark, in symbol order. Partial (every market the account holds in
 * partial mode, equity > 0): positions are reduced at mark, the one with
 * the largest maintenance margin first (ties by symbol), each by the least
 * multiple of its market's lot size (or the whole position) after which
 * equity less the fee is at least (1 + b)·maintenance, b the largest buffer
 * among the account's markets; a position that cannot restore it alone is
 * closed and the next one reduced.
 *
 * The fee is each market's liquidation fee rate on the notional closed, in
 * total at most what is left of a positive balance after closing. A
 * negative balance after closing everything is set to zero, the deficit
 * being the shortfall.
 */
export function planLiquidation(state: AccountState, marks: Marks, rules: MarginRules): LiquidationPlan | null {
  if (!isLiquidatable(state, marks, rules)) return null;
  const totals = marginTotals(state, marks, rules);
  const symbols = [...state.positions.keys()];
  const partial = symbols.length > 0 && totals.equity.isPos() && symbols.every((s) => rules.paramsOf(s).liquidationMode === 'partial');
  return partial ? partialPlan(state, marks, rules, totals) : fullPlan(state, marks, rules, totals);
}

function fullPlan(state: AccountState, marks: Marks, rules: MarginRules, totals: MarginTotals): LiquidationPlan {
  let balance = state.balance;
  let realised = ZERO;
  let rawFee = ZERO;
  const fills: ClosingFill[] = [];
  for (const symbol of [...state.positions.keys()].sort()) {
    const position = state.positions.get(symbol)!;
    const price = marks.get(symbol) ?? position.entryPrice;
    const fill = closeSlice(symbol, position, position.quantity.abs(), price, balance);
    balance = fill.balanceAfter;
    realised = realised.plus(fill.realisedPnl);
    rawFee = rawFee.plus(rules.paramsOf(symbol).liquidationFeeRate.times(fill.quantity).times(price));
    fills.push(fill);
  }
  const fee = cappedFee(rawFee, balance);
  balance = balance.minus(fee);
  const shortfall = balance.isNeg() ? balance.neg() : ZERO;
  return {
    mode: 'full',
    equity: totals.equity,
    maintenanceMargin: totals.maintenanceMargin,
    fills,
    realisedPnl: realised,
    fee,
    shortfall,
    balanceAfter: balance.isNeg() ? ZERO : balance,
    positionsAfter: new Map(),
  };
}

/** The fee, capped by what is left of a positive balance after closing. */
function cappedFee(raw: Dec, balanceAfterClosing: Dec): Dec {
  if (!balanceAfterClosing.isPos() || balanceAfterClosing.isZero()) return ZERO;
  return D.min(raw, balanceAfterClosing);
}

function closeSlice(symbol: string, position: Position, quantity: Dec, price: Dec, balance: Dec): ClosingFill {
  const side: Side = position.quantity.isPos() ? 'SELL' : 'BUY';
  const result = applyFill(position, side, quantity, price);
  return {
    symbol,
    side,
    quantity,
    price,
    realisedPnl: result.realisedPnl,
    closedQuantity: position.quantity.isPos() ? quantity : quantity.neg(),
    entryPrice: position.entryPrice,
    remaining: result.position,
    balanceAfter: balance.plus(result.realisedPnl),
  };
}

function partialPlan(state: AccountState, marks: Marks, rules: MarginRules, totals: MarginTotals): LiquidationPlan {
  const equity = totals.equity;
  let buffer = ZERO;
  for (const symbol of state.positions.keys()) buffer = D.max(buffer, rules.paramsOf(symbol).liquidationBuffer);
  const cover = ONE.plus(buffer);
  const order = [...state.positions.keys()].sort((a, b) => {
    const byMargin = totals.terms.get(b)!.mm.cmp(totals.terms.get(a)!.mm);
    return byMargin !== 0 ? byMargin : a < b ? -1 : a > b ? 1 : 0;
  });
  const positions = new Map(state.positions);
  let balance = state.balance;
  let rawFee = ZERO;
  let realised = ZERO;
  let maintenance = totals.maintenanceMargin;
  const fills: ClosingFill[] = [];
  for (const symbol of order) {
    const position = positions.get(symbol)!;
    const term = totals.terms.get(symbol)!;
    const params = rules.paramsOf(symbol);
    const slicer = new Slicer(position, term, maintenance.minus(term.mm), equity, balance, rawFee, params.liquidationFeeRate, cover, params.lotSize ?? DEFAULT_LOT);
    const { quantity, restored } = slicer.size();
    const fill = closeSlice(symbol, position, quantity, term.price, balance);
    fills.push(fill);
    balance = fill.balanceAfter;
    realised = realised.plus(fill.realisedPnl);
    rawFee = rawFee.plus(params.liquidationFeeRate.times(quantity).times(term.price));
    maintenance = slicer.maintenanceAfter(quantity);
    if (fill.remaining) positions.set(symbol, fill.remaining);
    else positions.delete(symbol);
    if (restored) break;
  }
  const fee = cappedFee(rawFee, balance);
  balance = balance.minus(fee);
  const shortfall = balance.isNeg() && positions.size === 0 ? balance.neg() : ZERO;
  return {
    mode: positions.size === 0 ? 'full' : 'partial',
    equity,
    maintenanceMargin: totals.maintenanceMargin,
    fills,
    realisedPnl: realised,
    fee,
    shortfall,
    balanceAfter: shortfall.isZero() ? balance : ZERO,
    positionsAfter: positions,
  };
}

/**
 * Sizes the slice of one position in a partial liquidation: the least
 * k ≥ 1 such that closing Δ = min(k·lot, |q|) leaves
 * E − fee(Δ) ≥ (1 + b)·(MM_others + MM(|q| − Δ)).
 *
 * The tier the rest falls in gives a linear inequality in Δ whose solution,
 * rounded up to a lot, is the candidate; it is then checked exactly (and
 * that one lot less does not do). When the candidate does not hold up (a
 * fee rate above (1 + b)·mmr, a fee capped by the balance), the least k is
 * found by bisection on the exact condition.
 */
class Slicer {
  private readonly size_: Dec;
  private readonly lots: Dec;
  private readonly bands: readonly TierBand[];

  constructor(
    private readonly position: Position,
    private readonly term: PositionTerm,
    private readonly othersMaintenance: Dec,
    private readonly equity: Dec,
    private readonly balance: Dec,
    private readonly rawFee: Dec,
    private readonly feeRate: Dec,
    private readonly cover: Dec,
    private readonly lot: Dec,
  ) {
    this.size_ = position.quantity.abs();
    this.lots = this.size_.div(lot).ceil();
    this.bands = term.bands;
  }

  /** The amount to close, and whether closing it restores the buffer. */
  size(): { quantity: Dec; restored: boolean } {
    const whole = this.size_;
    if (!this.holds(whole)) return { quantity: whole, restored: false };
    const guess = this.guess();
    if (guess !== null && this.holds(this.at(guess)) && (guess.eq(1) || !this.holds(this.at(guess.minus(1))))) {
      return { quantity: this.at(guess), restored: true };
    }
    // Bisection: holds(at(hi)) is true (hi = whole).
    let lo = ONE;
    let hi = this.lots;
    if (this.holds(this.at(lo))) return { quantity: this.at(lo), restored: true };
    while (hi.minus(lo).gt(1)) {
      const mid = lo.plus(hi).div(2).floor();
      if (this.holds(this.at(mid))) hi = mid;
      else lo = mid;
    }
    return { quantity: this.at(hi), restored: true };
  }

  /** Maintenance margin of the account once Δ of this position is closed. */
  maintenanceAfter(delta: Dec): Dec {
    const left = this.size_.minus(delta);
    return left.isZero() ? this.othersMaintenance : this.othersMaintenance.plus(maintenanceAt(this.bands, left.times(this.term.price)));
  }

  private at(k: Dec): Dec {
    const q = k.times(this.lot);
    return q.gt(this.size_) ? this.size_ : q;
  }

  /** The exact condition after closing Δ. */
  private holds(delta: Dec): boolean {
    const { position, term } = this;
    const balanceAfter = this.balance.plus(delta.times(position.quantity.s).times(term.price.minus(position.entryPrice)));
    const fee = cappedFee(this.rawFee.plus(this.feeRate.times(delta).times(term.price)), balanceAfter);
    return this.equity.minus(fee).gte(this.cover.times(this.maintenanceAfter(delta)));
  }

  /**
   * The solution of the uncapped-fee condition in the tier the rest falls
   * in, in lots (rounded up), or null when that condition does not tighten
   * as Δ grows.
   */
  private guess(): Dec | null {
    const m = this.term.price;
    let i = this.term.tier - 1;
    for (;;) {
      const band = this.bands[i]!;
      const slope = m.times(this.cover.times(band.mmr).minus(this.feeRate));
      if (!slope.isPos() || slope.isZero()) return null;
      const needed = this.cover
        .times(this.othersMaintenance.plus(this.size_.times(m).times(band.mmr)).minus(band.mma))
        .minus(this.equity)
        .plus(this.rawFee);
      const k = D.max(ONE, needed.div(slope).div(this.lot).ceil());
      if (i === 0) return k;
      // Still in this tier once k lots are closed? Otherwise solve in the one below.
      const left = this.size_.minus(this.at(k)).times(m);
      if (left.gt(this.bands[i - 1]!.maxNotional!)) return k;
      i--;
    }
  }
}

/**
 * Where one position's mark would tip the account under maintenance:
 * - `long`: liquidatable when the mark falls below `price`;
 * - `short`: liquidatable when the mark rises above `price`;
 * `price` null means never (on this symbol alone), 'always' means already.
 *
 * Held as the exact quotient numerator / slope; `price` divides (exactly,
 * 18 places, half-even) only when asked: the risk index scores by it (see
 * risk-index.ts scoreOf), and it is the position's liquidation price.
 */
export class Threshold {
  private exact: Dec | undefined;

  constructor(
    readonly side: 'long' | 'short',
    /** q·e − C */
    readonly numerator: Dec,
    /** q − r·|q| (zero: the mark does not move this account's cushion) */
    readonly slope: Dec,
  ) {}

  get price(): Dec | null | 'always' {
    if (this.slope.isZero()) return this.numerator.isPos() ? 'always' : null;
    return (this.exact ??= divRound(this.numerator, this.slope));
  }
}

/**
 * With the other marks fixed, equity − maintenance is piecewise linear in
 * this symbol's mark m: f(m) = C − q·e + q·m − MM(|q|·m), C being the rest of
 * the account (balance plus the other positions' PnL less their
 * maintenance). MM is linear within a tier, and f is monotone (rising for a
 * long, falling for a short, maintenance rates below 1), so the threshold is
 * the root in the one tier where f changes sign. At a tier's upper bound
 * m = M/|q| the value f is exact without a division:
 * C − q·e + sign(q)·M − (M·mmr − mma). In that tier the root is
 * (q·e − C − mma) / (q − |q|·mmr).
 *
 * `totals` may be passed when already taken on this state at these marks
 * (the pre-trade check's).
 */
export function liquidationThresholds(state: AccountState, marks: Marks, rules: MarginRules, totals?: MarginTotals): Map<string, Threshold> {
  const { equity, maintenanceMargin, terms } = totals ?? marginTotals(state, marks, rules);
  const total = equity.minus(maintenanceMargin); // f at the current marks
  const out = new Map<string, Threshold>();
  for (const [symbol, p] of state.positions) {
    const term = terms.get(symbol)!;
    // q·e − C = k − total, with k = q·e + pnl − mm depending on this position alone.
    const base = ownPart(p, term).minus(total);
    const long = p.quantity.isPos();
    const bands = term.bands;
    let i = 0;
    for (; i < bands.length - 1; i++) {
      const b = bands[i]!;
      const bound = b.maxNotional!;
      const f = (long ? bound : bound.neg()).minus(bound.times(b.mmr)).plus(b.mma).minus(base);
      if (long ? !f.isNeg() : f.isNeg() || f.isZero()) break;
    }
    const band = bands[i]!;
    const { slope } = slopeOf(p, band);
    out.set(symbol, new Threshold(long ? 'long' : 'short', band.mma.isZero() ? base : base.minus(band.mma), slope));
  }
  return out;
}

/** A position in a market with more than one tier, as the margin report orders it. */
export interface TierOneOrder {
  /**
   * Where equity would meet maintenance if the first tier's rate applied at
   * any size (its linear extension). For an account holding one symbol whose
   * position is in the first tier at the current mark, utilisation is
   * monotone in it, as in a one-tier market (docs/architecture.md).
   */
  readonly order: Threshold;
  /** |q|: the position is beyond the first tier at mark m when |q|·m exceeds the first tier's bound. */
  readonly size: Dec;
}

/** For each position in a market with more than one tier: its tier-one order and size (see TierOneOrder). */
export function tierOneOrders(state: AccountState, marks: Marks, rules: MarginRules, totals?: MarginTotals): Map<string, TierOneOrder> {
  const out = new Map<string, TierOneOrder>();
  let total: Dec | null = null;
  for (const [symbol, p] of state.positions) {
    if (rules.paramsOf(symbol).tiers.length < 2) continue;
    const t = totals ?? marginTotals(state, marks, rules);
    total ??= t.equity.minus(t.maintenanceMargin);
    const term = t.terms.get(symbol)!;
    const { slope } = slopeOf(p, term.bands[0]!);
    out.set(symbol, { order: new Threshold(p.quantity.isPos() ? 'long' : 'short', ownPart(p, term).minus(total), slope), size: p.quantity.abs() });
    totals = t;
  }
  return out;
}

/**
 * Each position's liquidation price: the mark of its symbol at which the
 * account's equity would equal its maintenance margin, the other marks held
 * (18 places, half-even); null when no positive price does that.
 */
export function liquidationPrices(state: AccountState, marks: Marks, rules: MarginRules): Map<string, Dec | null> {
  const out = new Map<string, Dec | null>();
  for (const [symbol, t] of liquidationThresholds(state, marks, rules)) {
    const price = t.price;
    out.set(symbol, price === null || price === 'always' || !price.isPos() || price.isZero() ? null : price);
  }
  return out;
}

/** k = q·e + pnl − mm for one valuation of one position, remembered on the valuation (a trade only computes it for the position it changed). */
const OWN = Symbol('own');

function ownPart(p: Position, term: PositionTerm): Dec {
  const known = (term as { [OWN]?: Dec })[OWN];
  if (known !== undefined) return known;
  return remember(term, OWN, p.quantity.times(p.entryPrice).plus(term.pnl).minus(term.mm));
}

/**
 * The slope of f in one tier, q − mmr·|q| (q·(1 − mmr) for a long, q·(1 + mmr)
 * for a short), remembered per position object and tier.
 */
const SLOPE = Symbol('slope');
type Slope = { readonly band: TierBand; readonly slope: Dec };

function slopeOf(p: Position, band: TierBand): Slope {
  const known = (p as { [SLOPE]?: Slope })[SLOPE];
  if (known !== undefined && known.band === band) return known;
  const slope = p.quantity.times(p.quantity.isPos() ? ONE.minus(band.mmr) : ONE.plus(band.mmr));
  return remember(p, SLOPE, { band, slope });
}
