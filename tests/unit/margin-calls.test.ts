/**
 * Margin calls, pure: which transitions count, and the tick's candidate
 * selection (the risk index's scores, read over the scaled ranges) checked
 * against a brute-force evaluation of the status before and after.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { D, type Dec } from '../../src/domain/decimal.js';
import { liquidationThresholds, tierOneOrders } from '../../src/domain/liquidation.js';
import { firstTier, marginCallRange, statusChange, tickChange, worsened } from '../../src/domain/margin-calls.js';
import { flatRules, valueAccount, type AccountState, type MarginRules, type MarginStatus } from '../../src/domain/margin.js';
import type { MarginTier } from '../../src/domain/markets.js';
import { scoreAtLeast, scoreAtMost, scoreOf } from '../../src/store/risk-index.js';

const d = (v: string | number) => new D(v);
const rates = flatRules({ initial: d('0.2'), maintenance: d('0.1') });
const account = (balance: string, positions: Record<string, [string, string]> = {}): AccountState => ({
  balance: d(balance),
  positions: new Map(Object.entries(positions).map(([s, [q, e]]) => [s, { quantity: d(q), entryPrice: d(e) }])),
});
const marks = (m: Record<string, string>) => new Map(Object.entries(m).map(([k, v]) => [k, d(v)]));

describe('which transitions are margin calls', () => {
  it('counts only a worse status', () => {
    expect(worsened('healthy', 'margin_call')).toBe(true);
    expect(worsened('healthy', 'liquidatable')).toBe(true);
    expect(worsened('margin_call', 'liquidatable')).toBe(true);
    expect(worsened('margin_call', 'margin_call')).toBe(false);
    expect(worsened('liquidatable', 'margin_call')).toBe(false);
    expect(worsened('margin_call', 'healthy')).toBe(false);
  });

  it('finds a long entering margin call exactly at its initial-margin threshold', () => {
    // 1 BTC long at 50000 on 14000: equity m − 36000, initial 0.2·m: equal at m = 45000 (equity 9000).
    const a = account('14000', { 'BTC-PERP': ['1', '50000'] });
    expect(tickChange(a, marks({ 'BTC-PERP': '45000' }), 'BTC-PERP', d('46000'), rates)).toBeNull(); // exactly at IM: healthy
    const change = tickChange(a, marks({ 'BTC-PERP': '44999.99' }), 'BTC-PERP', d('45000'), rates)!;
    expect(change).toMatchObject({ previous: 'healthy', status: 'margin_call' });
    expect(change.totals.equity.toString()).toBe('8999.99');
    expect(change.totals.initialMargin.toString()).toBe('8999.998');
    expect(change.marks).toEqual(new Map([['BTC-PERP', d('44999.99')]]));
    // Back up, and down again from inside the band: no new call.
    expect(tickChange(a, marks({ 'BTC-PERP': '44000' }), 'BTC-PERP', d('44999.99'), rates)).toBeNull();
  });

  it('judges a first mark from the entry prices the positions were valued at', () => {
    // A short of 1 at 3000 on 500: at entry equity 500 ≥ initial 600? no: already margin_call at entry → no call to margin_call.
    const s = account('500', { 'ETH-PERP': ['-1', '3000'] });
    expect(tickChange(s, marks({ 'ETH-PERP': '3050' }), 'ETH-PERP', null, rates)).toBeNull();
    // At 3500: equity 0 < maintenance 350: liquidatable, worse than margin_call.
    expect(tickChange(s, marks({ 'ETH-PERP': '3500' }), 'ETH-PERP', null, rates)).toMatchObject({ previous: 'margin_call', status: 'liquidatable' });
  });

  it('takes a reduce-only trade at a bad price as a transition of the account', () => {
    // 2 BTC long at 50000 on 22000, mark 50000: equity 22000 ≥ IM 20000. Selling 1 at 40000 realises −10000:
    // balance 12000, 1 BTC at mark 50000: equity 12000 ≥ IM 10000, healthy. Selling 1 at 35000: balance 7000 → margin_call.
    const before = account('22000', { 'BTC-PERP': ['2', '50000'] });
    const m = marks({ 'BTC-PERP': '50000' });
    expect(statusChange(before, m, account('12000', { 'BTC-PERP': ['1', '50000'] }), m, rates)).toBeNull();
    expect(statusChange(before, m, account('7000', { 'BTC-PERP': ['1', '50000'] }), m, rates)).toMatchObject({ previous: 'healthy', status: 'margin_call' });
  });
});

// ---- the tick's candidate selection against brute force

const statusAt = (a: AccountState, symbol: string, mark: Dec | null, rules: MarginRules): MarginStatus =>
  valueAccount(a, mark === null ? new Map() : new Map([[symbol, mark]]), rules).status;

/** Whether the tick's reads (endangeredBy and marginCallCandidates, simulated on the same scores) return this single-symbol holder. */
function selected(a: AccountState, symbol: string, from: Dec | null, to: Dec, rules: MarginRules): boolean {
  if (from === null) return true; // the first mark: every holder
  const p = a.positions.get(symbol)!;
  const long = p.quantity.isPos();
  const t = liquidationThresholds(a, new Map([[symbol, to]]), rules).get(symbol)!;
  const score = scoreOf(t);
  // endangeredBy: long score ≤ −scoreAtMost(to), short score ≤ scoreAtLeast(to)
  if (long ? score <= -scoreAtMost(to) : score <= scoreAtLeast(to)) return true;
  const tier = firstTier(rules, symbol);
  const range = marginCallRange(from, to, tier.initialRate, tier.maintenanceRate);
  if (range === 'all') return true;
  if (tier.tiered && tier.bound !== null) {
    const top = to.gt(from) ? to : from;
    if (Number(p.quantity.abs().toString()) >= scoreAtMost(tier.bound.div(top))) return true;
  }
  if (range === null || range.side !== (long ? 'long' : 'short')) return false;
  const listed = tier.tiered ? scoreOf(tierOneOrders(a, new Map([[symbol, to]]), rules).get(symbol)!.order) : score;
  return range.side === 'long'
    ? listed >= -scoreAtLeast(range.high) && listed <= -scoreAtMost(range.low)
    : listed >= scoreAtMost(range.low) && listed <= scoreAtLeast(range.high);
}

const cents = (lo: number, hi: number) => fc.integer({ min: lo * 100, max: hi * 100 }).map((c) => d(c).div(100));
const rate = fc.constantFrom('0.01', '0.02', '0.05', '0.1', '0.2', '0.5', '0.9').map(d);

/** One to three tiers, rates non-decreasing, maintenance ≤ initial. */
const tiersArb: fc.Arbitrary<MarginTier[]> = fc
  .array(fc.tuple(rate, fc.constantFrom('0.25', '0.5', '1').map(d), fc.integer({ min: 1, max: 400 })), { minLength: 1, maxLength: 3 })
  .map((raw) => {
    let imr = d(0);
    let mmr = d(0);
    let bound = d(0);
    return raw.map(([r, share, step], i): MarginTier => {
      imr = D.max(imr, r);
      mmr = D.min(imr, D.max(mmr, imr.times(share)));
      bound = bound.plus(step * 1000);
      return { maxNotional: i === raw.length - 1 ? null : bound, initialMarginRate: imr, maintenanceMarginRate: mmr };
    });
  });

const caseArb = fc.record({
  tiers: tiersArb,
  balance: cents(0, 100_000),
  lots: fc.integer({ min: -300, max: 300 }).filter((n) => n !== 0),
  entry: cents(100, 60_000),
  moveFrom: fc.integer({ min: -5000, max: 5000 }),
  moveTo: fc.integer({ min: -5000, max: 5000 }),
  first: fc.boolean(),
});

describe('a tick finds every single-symbol holder whose status gets worse, from the index alone', () => {
  it('against brute force, one tier and tiered, random accounts and moves', () => {
    fc.assert(
      fc.property(caseArb, ({ tiers, balance, lots, entry, moveFrom, moveTo, first }) => {
        const rules = flatRules({ initial: d(1), maintenance: d(1) }, { tiers });
        const a: AccountState = { balance, positions: new Map([['X', { quantity: d(lots).div(10), entryPrice: entry }]]) };
        const from = first ? null : entry.times(d(10_000 + moveFrom).div(10_000)).toDecimalPlaces(2);
        const to = entry.times(d(10_000 + moveTo).div(10_000)).toDecimalPlaces(2);
        if (!to.isPos() || (from !== null && !from.isPos())) return;
        const brute = worsened(statusAt(a, 'X', from, rules), statusAt(a, 'X', to, rules));
        const change = tickChange(a, new Map([['X', to]]), 'X', from, rules);
        expect(change !== null).toBe(brute);
        if (brute) expect(selected(a, 'X', from, to, rules)).toBe(true);
      }),
      { numRuns: 5_000 },
    );
  });

  it('at the boundary: marks one cent either side of the exact initial-margin threshold', () => {
    fc.assert(
      fc.property(tiersArb, cents(0, 100_000), fc.integer({ min: -300, max: 300 }).filter((n) => n !== 0), cents(100, 60_000), (tiers, balance, lots, entry) => {
        const rules = flatRules({ initial: d(1), maintenance: d(1) }, { tiers });
        const q = d(lots).div(10);
        const a: AccountState = { balance, positions: new Map([['X', { quantity: q, entryPrice: entry }]]) };
        // The first tier's initial-margin threshold, (q·e − b)/(q − imr·|q|), rounded to a cent, and its neighbours.
        const imr = tiers[0]!.initialMarginRate;
        const slope = q.minus(imr.times(q.abs()));
        if (slope.isZero()) return;
        const t = q.times(entry).minus(balance).div(slope).toDecimalPlaces(2);
        for (const [f, g] of [
          [t.plus('0.01'), t],
          [t, t.minus('0.01')],
          [t.minus('0.01'), t],
          [t, t.plus('0.01')],
          [t.plus('0.01'), t.minus('0.01')],
          [t.minus('0.01'), t.plus('0.01')],
        ] as const) {
          if (!f.isPos() || !g.isPos()) continue;
          const brute = worsened(statusAt(a, 'X', f, rules), statusAt(a, 'X', g, rules));
          expect(tickChange(a, new Map([['X', g]]), 'X', f, rules) !== null).toBe(brute);
          if (brute) expect(selected(a, 'X', f, g, rules)).toBe(true);
        }
      }),
      { numRuns: 2_000 },
    );
  });

  it('reads a narrow range: a one-tier holder far from its initial-margin threshold is not a candidate', () => {
    // 1 BTC long at 50000 on 14000: initial-margin threshold 45000, maintenance 40000. A fall 50000 → 49000 crosses neither.
    const a = account('14000', { 'BTC-PERP': ['1', '50000'] });
    expect(selected(a, 'BTC-PERP', d('50000'), d('49000'), rates)).toBe(false);
    expect(selected(a, 'BTC-PERP', d('46000'), d('44000'), rates)).toBe(true);
    // Rising marks never take a long below initial margin: no long is read.
    expect(marginCallRange(d('44000'), d('46000'), d('0.2'), d('0.1'))).toMatchObject({ side: 'short' });
  });
});
