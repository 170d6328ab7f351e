/**
 * Pure margin math. Decimals in, decimals out: no I/O, no clients.
 */
import { D, type Dec, ZERO, HUNDRED, divRound } from './decimal.js';

export type Side = 'BUY' | 'SELL';
export type MarginStatus = 'healthy' | 'margin_call' | 'liquidatable';

export interface Position {
  readonly quantity: Dec; // signed: long > 0, short < 0, never zero
  readonly entryPrice: Dec;
}

export interface AccountState {
  readonly balance: Dec;
  readonly positions: ReadonlyMap<string, Position>;
}

export interface MarginRates {
  readonly initial: Dec;
  readonly maintenance: Dec;
}

/** Mark price per symbol; a symbol absent here has no mark yet. */
export type Marks = ReadonlyMap<string, Dec>;

export interface TradeFill {
  readonly symbol: string;
  readonly side: Side;
  readonly quantity: Dec; // unsigned, > 0
  readonly price: Dec;
}

export interface FillResult {
  /** The symbol's position after the fill; undefined when it closed flat. */
  readonly position: Position | undefined;
  readonly realisedPnl: Dec;
  /** True when the fill only shrinks an existing position (never past zero). */
  readonly reduceOnly: boolean;
}

/** Netting of one fill into one position (opening, increasing, reducing, closing, flipping). */
export function applyFill(position: Position | undefined, side: Side, quantity: Dec, price: Dec): FillResult {
  const t = side === 'BUY' ? quantity : quantity.neg();
  if (!position || position.quantity.isZero()) {
    return { position: { quantity: t, entryPrice: price }, realisedPnl: ZERO, reduceOnly: false };
  }
  const q = position.quantity;
  const e = position.entryPrice;
  if (q.isPos() === t.isPos()) {
    // Opening or increasing: e' = (q·e + t·p) / q'
    const q2 = q.plus(t);
    const e2 = divRound(q.times(e).plus(t.times(price)), q2);
    return { position: { quantity: q2, entryPrice: e2 }, realisedPnl: ZERO, reduceOnly: false };
  }
  // Reducing: c = min(|t|, |q|) realises c · sign(q) · (p − e).
  const closed = D.min(t.abs(), q.abs());
  const realisedPnl = closed.times(q.s).times(price.minus(e));
  const q2 = q.plus(t);
  if (q2.isZero()) return { position: undefined, realisedPnl, reduceOnly: true };
  if (q2.isPos() === q.isPos()) {
    return { position: { quantity: q2, entryPrice: e }, realisedPnl, reduceOnly: true };
  }
  // Flipped: the remainder opens at the trade price.
  return { position: { quantity: q2, entryPrice: price }, realisedPnl, reduceOnly: false };
}

export interface TradeOutcome extends FillResult {
  readonly after: AccountState;
}

/** The account after a fill: position netted, realised PnL booked to the balance. */
export function applyTrade(state: AccountState, fill: TradeFill): TradeOutcome {
  const result = applyFill(state.positions.get(fill.symbol), fill.side, fill.quantity, fill.price);
  const positions = new Map(state.positions);
  if (result.position) positions.set(fill.symbol, result.position);
  else positions.delete(fill.symbol);
  return { ...result, after: { balance: state.balance.plus(result.realisedPnl), positions } };
}

export interface PositionValuation {
  readonly symbol: string;
  readonly quantity: Dec;
  readonly entryPrice: Dec;
  readonly markPrice: Dec | null;
  readonly notional: Dec;
  readonly unrealisedPnl: Dec;
}

export interface AccountMargin {
  readonly balance: Dec;
  readonly equity: Dec;
  readonly unrealisedPnl: Dec;
  readonly notional: Dec;
  readonly initialMargin: Dec;
  readonly maintenanceMargin: Dec;
  readonly availableMargin: Dec;
  /** null when equity ≤ 0 while positions exist. */
  readonly utilisationPct: Dec | null;
  readonly status: MarginStatus;
  readonly positions: readonly PositionValuation[];
}

/** Values one position; a symbol with no mark yet is valued at its entry price. */
export function valuePosition(symbol: string, position: Position, marks: Marks): PositionValuation {
  const markPrice = marks.get(symbol) ?? null;
  const valuationPrice = markPrice ?? position.entryPrice;
  return {
    symbol,
    quantity: position.quantity,
    entryPrice: position.entryPrice,
    markPrice,
    notional: position.quantity.abs().times(valuationPrice),
    unrealisedPnl: position.quantity.times(valuationPrice.minus(position.entryPrice)),
  };
}

export function marginStatus(equity: Dec, initialMargin: Dec, maintenanceMargin: Dec): MarginStatus {
  if (equity.gte(initialMargin)) return 'healthy';
  if (equity.gte(maintenanceMargin)) return 'margin_call';
  return 'liquidatable';
}

export interface MarginTotals {
  readonly equity: Dec;
  readonly notional: Dec;
  readonly initialMargin: Dec;
  readonly maintenanceMargin: Dec;
  /**
   * Each position's unrealised PnL and notional at the marks the totals were
   * taken at: the liquidation thresholds are computed from them without
   * valuing the account again.
   */
  readonly terms: ReadonlyMap<string, { readonly pnl: Dec; readonly notional: Dec }>;
}

/**
 * A position's PnL and notional at one price, remembered while the position
 * and the price are the same objects (both are immutable: a trade makes a new
 * position, a new mark a new price). A trade changes one position of an
 * account; the others are not valued again. A cache of a pure function: the
 * results are the same with or without it.
 */
const VALUED = Symbol('valued');
type Valued = { readonly price: Dec; readonly pnl: Dec; readonly notional: Dec };

/**
 * Keeps a derived value on the object it was derived from, under a symbol,
 * non-enumerable: it is not part of the object's value (comparisons, copies
 * and JSON do not see it). A property rather than a WeakMap entry: the
 * engine makes new positions at its trade rate, and V8 processes WeakMap
 * entries in the atomic pause of every full GC (they made those pauses
 * 7.5–20 ms against 3.4–12 ms without; see docs/benchmarks.md).
 */
export function remember<T>(holder: object, key: symbol, value: T): T {
  Object.defineProperty(holder, key, { value, writable: true, configurable: true });
  return value;
}

function valueAt(p: Position, price: Dec): { readonly pnl: Dec; readonly notional: Dec } {
  const known = (p as { [VALUED]?: Valued })[VALUED];
  if (known !== undefined && known.price === price) return known;
  return remember(p, VALUED, { price, pnl: p.quantity.times(price.minus(p.entryPrice)), notional: p.quantity.abs().times(price) });
}

/** Equity and margins only: what the pre-trade and withdrawal checks need (no division). */
export function marginTotals(state: AccountState, marks: Marks, rates: MarginRates): MarginTotals {
  let equity = state.balance;
  let notional = ZERO;
  const terms = new Map<string, { pnl: Dec; notional: Dec }>();
  for (const [symbol, p] of state.positions) {
    const term = valueAt(p, marks.get(symbol) ?? p.entryPrice);
    terms.set(symbol, term);
    equity = equity.plus(term.pnl);
    notional = notional.plus(term.notional);
  }
  return { equity, notional, initialMargin: notional.times(rates.initial), maintenanceMargin: notional.times(rates.maintenance), terms };
}

/** Everything GET /positions reports, from the account's state and the current marks. */
export function valueAccount(state: AccountState, marks: Marks, rates: MarginRates): AccountMargin {
  const positions = [...state.positions.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([symbol, position]) => valuePosition(symbol, position, marks));
  let unrealisedPnl = ZERO;
  let notional = ZERO;
  for (const p of positions) {
    unrealisedPnl = unrealisedPnl.plus(p.unrealisedPnl);
    notional = notional.plus(p.notional);
  }
  const equity = state.balance.plus(unrealisedPnl);
  const initialMargin = notional.times(rates.initial);
  const maintenanceMargin = notional.times(rates.maintenance);
  let utilisationPct: Dec | null;
  if (positions.length === 0) utilisationPct = ZERO;
  else if (equity.lte(0)) utilisationPct = null;
  else utilisationPct = divRound(maintenanceMargin.times(HUNDRED), equity);
  return {
    balance: state.balance,
    equity,
    unrealisedPnl,
    notional,
    initialMargin,
    maintenanceMargin,
    availableMargin: equity.minus(initialMargin),
    utilisationPct,
    status: marginStatus(equity, initialMargin, maintenanceMargin),
    positions,
  };
}

export interface RiskSummary extends MarginTotals {
  readonly balance: Dec;
  /** null when equity ≤ 0 while positions exist. */
  readonly utilisationPct: Dec | null;
  readonly status: MarginStatus;
}

/** What the margin report shows per account: valueAccount without the per-position detail. */
export function riskSummary(state: AccountState, marks: Marks, rates: MarginRates): RiskSummary {
  const totals = marginTotals(state, marks, rates);
  const { equity, maintenanceMargin, initialMargin } = totals;
  let utilisationPct: Dec | null;
  if (state.positions.size === 0) utilisationPct = ZERO;
  else if (equity.lte(0)) utilisationPct = null;
  else utilisationPct = divRound(maintenanceMargin.times(HUNDRED), equity);
  return { ...totals, balance: state.balance, utilisationPct, status: marginStatus(equity, initialMargin, maintenanceMargin) };
}

export type TradeDecision =
  | { readonly accepted: true; readonly outcome: TradeOutcome; readonly margin: MarginTotals }
  | { readonly accepted: false; readonly outcome: TradeOutcome; readonly margin: MarginTotals; readonly required: Dec; readonly available: Dec };

/**
 * Pre-trade check on the state after the trade, at current marks. A fill that
 * only reduces a position is always accepted; any other needs
 * equity_after ≥ initial_margin_after.
 */
export function decideTrade(state: AccountState, fill: TradeFill, marks: Marks, rates: MarginRates): TradeDecision {
  const outcome = applyTrade(state, fill);
  const margin = marginTotals(outcome.after, marks, rates);
  if (outcome.reduceOnly || margin.equity.gte(margin.initialMargin)) {
    return { accepted: true, outcome, margin };
  }
  return { accepted: false, outcome, margin, required: margin.initialMargin, available: margin.equity };
}

export type WithdrawalDecision =
  | { readonly accepted: true; readonly balanceAfter: Dec }
  | { readonly accepted: false; readonly required: Dec; readonly available: Dec };

/** The most that can be withdrawn now: min(balance, equity − initial margin), never below zero. */
export function withdrawable(state: AccountState, marks: Marks, rates: MarginRates): Dec {
  const margin = marginTotals(state, marks, rates);
  const free = D.min(state.balance, margin.equity.minus(margin.initialMargin));
  return free.isNeg() ? ZERO : free;
}

/** A withdrawal needs amount ≤ balance and equity − amount ≥ initial margin. */
export function decideWithdrawal(state: AccountState, amount: Dec, marks: Marks, rates: MarginRates): WithdrawalDecision {
  const margin = marginTotals(state, marks, rates);
  if (amount.lte(state.balance) && margin.equity.minus(amount).gte(margin.initialMargin)) {
    return { accepted: true, balanceAfter: state.balance.minus(amount) };
  }
  return { accepted: false, required: amount, available: withdrawable(state, marks, rates) };
}
