/**
 * Margin calls: an account whose status (the margin report's: healthy,
 * margin_call when equity < initial margin, liquidatable when equity <
 * maintenance margin) got worse. Pure: states and marks in, the transition
 * out.
 */
import { D, type Dec } from './decimal.js';
import { marginStatus, marginTotals, type AccountState, type MarginRules, type MarginStatus, type MarginTotals, type Marks } from './margin.js';
import { bandsOf } from './tiers.js';

const RANK: Readonly<Record<MarginStatus, number>> = { healthy: 0, margin_call: 1, liquidatable: 2 };

/** `after` is worse than `before`. */
export const worsened = (before: MarginStatus, after: MarginStatus) => RANK[after] > RANK[before];

/** The status of margin totals (an account with no position: healthy unless its balance is negative). */
export const statusOf = (t: MarginTotals): MarginStatus => marginStatus(t.equity, t.initialMargin, t.maintenanceMargin);

export interface StatusChange {
  readonly previous: MarginStatus;
  readonly status: 'margin_call' | 'liquidatable';
  /** The account's totals in its new status. */
  readonly totals: MarginTotals;
  /** Each symbol held after → its mark then (null: no mark yet, valued at its entry). */
  readonly marks: ReadonlyMap<string, Dec | null>;
}

/** The account's transition from (`before`, `beforeMarks`) to (`after`, `afterMarks`), or null when its status did not get worse. */
export function statusChange(before: AccountState, beforeMarks: Marks, after: AccountState, afterMarks: Marks, rules: MarginRules, afterTotals?: MarginTotals): StatusChange | null {
  const totals = afterTotals ?? marginTotals(after, afterMarks, rules);
  const status = statusOf(totals);
  if (status === 'healthy') return null;
  const previous = statusOf(marginTotals(before, beforeMarks, rules));
  if (!worsened(previous, status)) return null;
  return { previous, status, totals, marks: marksOf(after, afterMarks) };
}

/** The marks before a tick on `symbol` from `from` (null: its first mark, no mark before). */
export function marksBefore(marks: Marks, symbol: string, from: Dec | null): Marks {
  const before = new Map(marks);
  if (from === null) before.delete(symbol);
  else before.set(symbol, from);
  return before;
}

/**
 * A tick on `symbol` from `from` (null: its first mark) to its mark in
 * `marks`: the account's transition, or null. `before`: the marks before
 * it, when the caller checks many accounts at the same marks.
 */
export function tickChange(state: AccountState, marks: Marks, symbol: string, from: Dec | null, rules: MarginRules, before?: Marks): StatusChange | null {
  if (!state.positions.has(symbol)) return null;
  return statusChange(state, before ?? marksBefore(marks, symbol, from), state, marks, rules);
}

function marksOf(state: AccountState, marks: Marks): Map<string, Dec | null> {
  const out = new Map<string, Dec | null>();
  for (const symbol of [...state.positions.keys()].sort()) out.set(symbol, marks.get(symbol) ?? null);
  return out;
}

/**
 * Where a tick on one symbol can find the single-symbol holders it takes
 * below initial margin, from the threshold lists the risk index already
 * keeps (docs/architecture.md, "Margin calls").
 *
 * For an account holding one symbol at rates r_im, r_mm (one tier, or the
 * first tier of a tiered market while the position stays in it), with
 * b the balance, q the signed position and e its entry:
 * equity − r·|q|·m = b − q·e + m·(q − r·|q|) is linear in the mark m, zero
 * at (q·e − b)/(q − r·|q|). So the initial-margin threshold is the
 * maintenance one (the `idx` score, or `rep` for a tiered market) times
 *   long:  (1 − r_mm)/(1 − r_im)   (below it: margin call)
 *   short: (1 + r_mm)/(1 + r_im)   (above it: margin call).
 * A long enters margin call on a fall from `from` to `to` when
 * to < T·k_long ≤ from, i.e. T in (to/k_long, from/k_long]; a short on a rise
 * when from ≤ T·k_short < to, i.e. T in [from/k_short, to/k_short).
 */
export interface MarginCallRange {
  readonly side: 'long' | 'short';
  /** Maintenance thresholds in [low, high] (a superset of the exact interval; every candidate is checked exactly). */
  readonly low: Dec;
  readonly high: Dec;
}

/** A relative margin around the bounds, far above any rounding of the stored scores (a few units in the 16th digit). */
const SLACK = new D('1e-12');
const ONE = new D(1);

/**
 * The threshold range to read for a move from `from` to `to`, given the
 * market's first-tier rates; null when no single-symbol holder can enter
 * margin call (no move), or 'all' when the rates leave the scaling
 * undefined (an initial rate of 1 or more) and every holder is checked.
 */
export function marginCallRange(from: Dec, to: Dec, initialRate: Dec, maintenanceRate: Dec): MarginCallRange | null | 'all' {
  if (to.eq(from)) return null;
  if (to.lt(from)) {
    const den = ONE.minus(initialRate);
    if (!den.isPos() || den.isZero()) return 'all';
    const k = ONE.minus(maintenanceRate).div(den);
    return { side: 'long', low: to.div(k).times(ONE.minus(SLACK)), high: from.div(k).times(ONE.plus(SLACK)) };
  }
  const k = ONE.plus(maintenanceRate).div(ONE.plus(initialRate));
  return { side: 'short', low: from.div(k).times(ONE.minus(SLACK)), high: to.div(k).times(ONE.plus(SLACK)) };
}

/** The first tier's rates and bound (null: one tier, no bound) of a market. */
export function firstTier(rules: MarginRules, symbol: string): { initialRate: Dec; maintenanceRate: Dec; bound: Dec | null; tiered: boolean } {
  const bands = bandsOf(rules.paramsOf(symbol).tiers);
  const b = bands[0]!;
  return { initialRate: b.imr, maintenanceRate: b.mmr, bound: bands.length > 1 ? b.maxNotional : null, tiered: bands.length > 1 };
}
