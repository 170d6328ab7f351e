/**
 * Pure margin math. Decimals in, decimals out: no I/O, no clients.
 */
import { D, type Dec, ZERO, HUNDRED, divRound } from './decimal.js';
import type { MarketParams } from './markets.js';
import { remember } from './remember.js';
import { bandsOf, tierMargin, type TierBand } from './tiers.js';

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

/** What margin and liquidation need of a market. */
export type RiskParams = Pick<MarketParams, 'tiers' | 'liquidationMode' | 'liquidationFeeRate' | 'liquidationBuffer' | 'lotSize'>;

/** Each symbol's risk parameters: its market's, or the engine's defaults for a symbol not listed. */
export interface MarginRules {
  paramsOf(symbol: string): RiskParams;
}

/** One flat tier from the two rates, full liquidation, no fee: the accounting rules of §2 (tests and tools). */
export function flatRules(rates: MarginRates, extra: Partial<RiskParams> = {}): MarginRules {
  const params: RiskParams = {
    tiers: [{ maxNotional: null, initialMarginRate: rates.initial, maintenanceMarginRate: rates.maintenance }],
    liquidationMode: 'full',
    liquidationFeeRate: ZERO,
    liquidationBuffer: new D('0.02'),
    lotSize: null,
    ...extra,
  };
  return { paramsOf: () => params };
}

const RULES = Symbol('rules');

/**
 * The rules of a set of markets (the book's, read at one epoch): kept on the
 * map itself, which is immutable, so a decision does not build them again.
 */
export function marketRules(markets: ReadonlyMap<string, RiskParams>, defaults: RiskParams): MarginRules {
  const known = (markets as { [RULES]?: { defaults: RiskParams; rules: MarginRules } })[RULES];
  if (known !== undefined && known.defaults === defaults) return known.rules;
  const rules: MarginRules = { paramsOf: (symbol) => markets.get(symbol) ?? defaults };
  remember(markets, RULES, { defaults, rules });
  return rules;
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
  /** The margin tier its notional falls in (1-based), and its own margins there. */
  readonly tier: number;
  readonly initialMargin: Dec;
  readonly maintenanceMargin: Dec;
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
export function valuePosition(symbol: string, position: Position, marks: Marks, rules: MarginRules): PositionValuation {
  const markPrice = marks.get(symbol) ?? null;
  const term = valueAt(position, markPrice ?? position.entryPrice, bandsOf(rules.paramsOf(symbol).tiers));
  return {
    symbol,
    quantity: position.quantity,
    entryPrice: position.entryPrice,
    markPrice,
    notional: term.notional,
    unrealisedPnl: term.pnl,
    tier: term.tier,
    initialMargin: term.im,
    maintenanceMargin: term.mm,
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
   * Each position's valuation at the marks the totals were taken at: the
   * liquidation thresholds are computed from them without valuing the
   * account again.
   */
  readonly terms: ReadonlyMap<string, PositionTerm>;
}

/** One position valued at one price under one tier list. */
export interface PositionTerm {
  readonly price: Dec;
  readonly bands: readonly TierBand[];
  readonly pnl: Dec;
  readonly notional: Dec;
  readonly tier: number;
  readonly im: Dec;
  readonly mm: Dec;
}

/**
 * A position's valuation at one price, remembered while the position, the
 * price and the tiers are the same objects (all immutable: a trade makes a
 * new position, a new mark a new price, a market change new tiers). A trade
 * changes one position of an account; the others are not valued again. A
 * cache of a pure function: the results are the same with or without it.
 */
const VALUED = Symbol('valued');

export function valueAt(p: Position, price: Dec, bands: readonly TierBand[]): PositionTerm {
  const known = (p as { [VALUED]?: PositionTerm })[VALUED];
  if (known !== undefined && known.price === price && known.bands === bands) return known;
  const notional = p.quantity.abs().times(price);
  const m = tierMargin(bands, notional);
  return remember(p, VALUED, {
    price,
    bands,
    pnl: p.quantity.times(price.minus(p.entryPrice)),
    notional,
    tier: m.tier,
    im: m.initialMargin,
    mm: m.maintenanceMargin,
  });
}

/** Equity and margins only: what the pre-trade and withdrawal checks need (no division). */
export function marginTotals(state: AccountState, marks: Marks, rules: MarginRules): MarginTotals {
  let equity = state.balance;
  let notional = ZERO;
  let initialMargin = ZERO;
  let maintenanceMargin = ZERO;
  const terms = new Map<string, PositionTerm>();
  for (const [symbol, p] of state.positions) {
    const term = valueAt(p, marks.get(symbol) ?? p.entryPrice, bandsOf(rules.paramsOf(symbol).tiers));
    terms.set(symbol, term);
    equity = equity.plus(term.pnl);
    notional = notional.plus(term.notional);
    initialMargin = initialMargin.plus(term.im);
    maintenanceMargin = maintenanceMargin.plus(term.mm);
  }
  return { equity, notional, initialMargin, maintenanceMargin, terms };
}

/** Everything GET /positions reports, from the account's state and the current marks. */
export function valueAccount(state: AccountState, marks: Marks, rules: MarginRules): AccountMargin {
  const positions = [...state.positions.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([symbol, position]) => valuePosition(symbol, position, marks, rules));
  let unrealisedPnl = ZERO;
  let notional = ZERO;
  let initialMargin = ZERO;
  let maintenanceMargin = ZERO;
  for (const p of positions) {
    unrealisedPnl = unrealisedPnl.plus(p.unrealisedPnl);
    notional = notional.plus(p.notional);
    initialMargin = initialMargin.plus(p.initialMargin);
    maintenanceMargin = maintenanceMargin.plus(p.maintenanceMargin);
  }
  const equity = state.balance.plus(unrealisedPnl);
  return {
    balance: state.balance,
    equity,
    unrealisedPnl,
    notional,
    initialMargin,
    maintenanceMargin,
    availableMargin: equity.minus(initialMargin),
    utilisationPct: utilisation(positions.length, equity, maintenanceMargin),
    status: marginStatus(equity, initialMargin, maintenanceMargin),
    positions,
  };
}

/** maintenance / equity · 100; 0 with no position; null when equity ≤ 0 while positions exist. */
function utilisation(positions: number, equity: Dec, maintenanceMargin: Dec, scale?: number): Dec | null {
  if (positions === 0) return ZERO;
  if (equity.lte(0)) return null;
  return divRound(maintenanceMargin.times(HUNDRED), equity, scale);
}

/**
 * The places the margin report orders utilisation to. Shown to 18, two
 * accounts can tie while their exact utilisations (and their places in the
 * threshold lists) differ; to 40 places a tie is a tie of the thresholds
 * themselves, which the lists order by account id as the report does.
 */
export const ORDER_SCALE = 40;

export interface RiskSummary extends MarginTotals {
  readonly balance: Dec;
  /** null when equity ≤ 0 while positions exist. */
  readonly utilisationPct: Dec | null;
  /** The same to ORDER_SCALE places: the report's order. */
  readonly orderPct: Dec | null;
  readonly status: MarginStatus;
}

/** What the margin report shows per account: valueAccount without the per-position detail. */
export function riskSummary(state: AccountState, marks: Marks, rules: MarginRules): RiskSummary {
  const totals = marginTotals(state, marks, rules);
  const { equity, maintenanceMargin, initialMargin } = totals;
  return {
    ...totals,
    balance: state.balance,
    utilisationPct: utilisation(state.positions.size, equity, maintenanceMargin),
    orderPct: utilisation(state.positions.size, equity, maintenanceMargin, ORDER_SCALE),
    status: marginStatus(equity, initialMargin, maintenanceMargin),
  };
}

export type TradeDecision =
  | { readonly accepted: true; readonly outcome: TradeOutcome; readonly margin: MarginTotals }
  | { readonly accepted: false; readonly outcome: TradeOutcome; readonly margin: MarginTotals; readonly required: Dec; readonly available: Dec };

/**
 * Pre-trade check on the state after the trade, at current marks. A fill that
 * only reduces a position is always accepted; any other needs
 * equity_after ≥ initial_margin_after.
 */
export function decideTrade(state: AccountState, fill: TradeFill, marks: Marks, rules: MarginRules): TradeDecision {
  const outcome = applyTrade(state, fill);
  const margin = marginTotals(outcome.after, marks, rules);
  if (outcome.reduceOnly || margin.equity.gte(margin.initialMargin)) {
    return { accepted: true, outcome, margin };
  }
  return { accepted: false, outcome, margin, required: margin.initialMargin, available: margin.equity };
}

export type WithdrawalDecision =
  | { readonly accepted: true; readonly balanceAfter: Dec }
  | { readonly accepted: false; readonly required: Dec; readonly available: Dec };

/** The most that can be withdrawn now: min(balance, equity − initial margin), never below zero. */
export function withdrawable(state: AccountState, marks: Marks, rules: MarginRules): Dec {
  const margin = marginTotals(state, marks, rules);
  const free = D.min(state.balance, margin.equity.minus(margin.initialMargin));
  return free.isNeg() ? ZERO : free;
}

/** A withdrawal needs amount ≤ balance and equity − amount ≥ initial margin. */
export function decideWithdrawal(state: AccountState, amount: Dec, marks: Marks, rules: MarginRules): WithdrawalDecision {
  const margin = marginTotals(state, marks, rules);
  if (amount.lte(state.balance) && margin.equity.minus(amount).gte(margin.initialMargin)) {
    return { accepted: true, balanceAfter: state.balance.minus(amount) };
  }
  return { accepted: false, required: amount, available: withdrawable(state, marks, rules) };
}
