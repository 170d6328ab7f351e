/**
 * Pure margin math (DESIGN §2). Decimals in, decimals out: no I/O, no clients.
 */
import { D, ZERO, HUNDRED, divRound } from './decimal.js';
/** Netting of one fill into one position (opening, increasing, reducing, closing, flipping). */
export function applyFill(position, side, quantity, price) {
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
    if (q2.isZero())
        return { position: undefined, realisedPnl, reduceOnly: true };
    if (q2.isPos() === q.isPos()) {
        return { position: { quantity: q2, entryPrice: e }, realisedPnl, reduceOnly: true };
    }
    // Flipped: the remainder opens at the trade price.
    return { position: { quantity: q2, entryPrice: price }, realisedPnl, reduceOnly: false };
}
/** The account after a fill: position netted, realised PnL booked to the balance. */
export function applyTrade(state, fill) {
    const result = applyFill(state.positions.get(fill.symbol), fill.side, fill.quantity, fill.price);
    const positions = new Map(state.positions);
    if (result.position)
        positions.set(fill.symbol, result.position);
    else
        positions.delete(fill.symbol);
    // Opening or increasing realises nothing (applyFill returns ZERO itself): the balance is unchanged.
    const balance = result.realisedPnl === ZERO ? state.balance : state.balance.plus(result.realisedPnl);
    return { ...result, after: { balance, positions } };
}
/** Values one position; a symbol with no mark yet is valued at its entry price. */
export function valuePosition(symbol, position, marks) {
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
export function marginStatus(equity, initialMargin, maintenanceMargin) {
    if (equity.gte(initialMargin))
        return 'healthy';
    if (equity.gte(maintenanceMargin))
        return 'margin_call';
    return 'liquidatable';
}
/**
 * A position's PnL and notional at one price, remembered while the position
 * and the price are the same objects (both are immutable: a trade makes a new
 * position, a new mark a new price). A trade changes one position of an
 * account; the others are not valued again. A cache of a pure function: the
 * results are the same with or without it.
 */
const valued = new WeakMap();
function valueAt(p, price) {
    const known = valued.get(p);
    if (known !== undefined && known.price === price)
        return known;
    const term = { price, pnl: p.quantity.times(price.minus(p.entryPrice)), notional: p.quantity.abs().times(price) };
    valued.set(p, term);
    return term;
}
/** Equity and margins only: what the pre-trade and withdrawal checks need (no division). */
export function marginTotals(state, marks, rates) {
    let equity = state.balance;
    let notional = ZERO;
    const terms = new Map();
    for (const [symbol, p] of state.positions) {
        const term = valueAt(p, marks.get(symbol) ?? p.entryPrice);
        terms.set(symbol, term);
        equity = equity.plus(term.pnl);
        notional = notional.plus(term.notional);
    }
    return { equity, notional, initialMargin: notional.times(rates.initial), maintenanceMargin: notional.times(rates.maintenance), terms };
}
/** Everything GET /positions reports, from the account's state and the current marks. */
export function valueAccount(state, marks, rates) {
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
    let utilisationPct;
    if (positions.length === 0)
        utilisationPct = ZERO;
    else if (equity.lte(0))
        utilisationPct = null;
    else
        utilisationPct = divRound(maintenanceMargin.times(HUNDRED), equity);
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
/** What the margin report shows per account: valueAccount without the per-position detail. */
export function riskSummary(state, marks, rates) {
    const totals = marginTotals(state, marks, rates);
    const { equity, maintenanceMargin, initialMargin } = totals;
    let utilisationPct;
    if (state.positions.size === 0)
        utilisationPct = ZERO;
    else if (equity.lte(0))
        utilisationPct = null;
    else
        utilisationPct = divRound(maintenanceMargin.times(HUNDRED), equity);
    return { ...totals, balance: state.balance, utilisationPct, status: marginStatus(equity, initialMargin, maintenanceMargin) };
}
/**
 * Pre-trade check on the state after the trade, at current marks. A fill that
 * only reduces a position is always accepted; any other needs
 * equity_after ≥ initial_margin_after.
 */
export function decideTrade(state, fill, marks, rates) {
    const outcome = applyTrade(state, fill);
    const margin = marginTotals(outcome.after, marks, rates);
    if (outcome.reduceOnly || margin.equity.gte(margin.initialMargin)) {
        return { accepted: true, outcome, margin };
    }
    return { accepted: false, outcome, margin, required: margin.initialMargin, available: margin.equity };
}
/** The most that can be withdrawn now: min(balance, equity − initial margin), never below zero. */
export function withdrawable(state, marks, rates) {
    const margin = marginTotals(state, marks, rates);
    const free = D.min(state.balance, margin.equity.minus(margin.initialMargin));
    return free.isNeg() ? ZERO : free;
}
/** A withdrawal needs amount ≤ balance and equity − amount ≥ initial margin. */
export function decideWithdrawal(state, amount, marks, rates) {
    const margin = marginTotals(state, marks, rates);
    if (amount.lte(state.balance) && margin.equity.minus(amount).gte(margin.initialMargin)) {
        return { accepted: true, balanceAfter: state.balance.minus(amount) };
    }
    return { accepted: false, required: amount, available: withdrawable(state, marks, rates) };
}
//# sourceMappingURL=margin.js.map