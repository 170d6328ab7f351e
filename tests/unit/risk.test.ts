/**
 * Venue-grade risk, the pure math: tiered margin, partial liquidation
 * sizing, the liquidation fee and its cap, the flat account with a negative
 * balance, and the liquidation price.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { D, type Dec, ZERO } from '../../src/domain/decimal.js';
import { isLiquidatable, liquidationPrices, planLiquidation } from '../../src/domain/liquidation.js';
import { flatRules, marginTotals, valueAccount, type AccountState, type MarginRules, type Position, type RiskParams } from '../../src/domain/margin.js';
import type { MarginTier } from '../../src/domain/markets.js';
import { bandsOf, tierMargin } from '../../src/domain/tiers.js';

const d = (v: string | number) => new D(v);
const s = (x: Dec) => x.toString();
const pos = (quantity: string, entryPrice: string): Position => ({ quantity: d(quantity), entryPrice: d(entryPrice) });
const account = (balance: string, positions: Record<string, Position> = {}): AccountState => ({
  balance: d(balance),
  positions: new Map(Object.entries(positions)),
});
const marks = (m: Record<string, string> = {}) => new Map(Object.entries(m).map(([k, v]) => [k, d(v)]));
const tier = (maxNotional: string | null, imr: string, mmr: string): MarginTier => ({
  maxNotional: maxNotional === null ? null : d(maxNotional),
  initialMarginRate: d(imr),
  maintenanceMarginRate: d(mmr),
});

// Three tiers: 2 %/1 % to 10,000; 5 %/2.5 % to 50,000; 10 %/5 % beyond.
//   mma_2 = 10000·(0.025 − 0.01) = 150,   mma_3 = 150 + 50000·(0.05 − 0.025) = 1400
//   ima_2 = 10000·(0.05 − 0.02)  = 300,   ima_3 = 300 + 50000·(0.1 − 0.05)    = 2800
const TIERS = [tier('10000', '0.02', '0.01'), tier('50000', '0.05', '0.025'), tier(null, '0.1', '0.05')];

/** Rules with the same parameters for every symbol. */
const rulesWith = (p: Partial<RiskParams>): MarginRules => flatRules({ initial: d('0.2'), maintenance: d('0.1') }, p);

describe('tiered margin', () => {
  const bands = bandsOf(TIERS);
  const at = (n: string) => {
    const m = tierMargin(bands, d(n));
    return [m.tier, s(m.initialMargin), s(m.maintenanceMargin)];
  };

  it('puts a notional in the first tier whose bound is at least it, with the cumulative amounts', () => {
    expect(at('5000')).toEqual([1, '100', '50']);
    expect(at('10000')).toEqual([1, '200', '100']); // on the bound: still tier 1
    expect(at('10000.01')).toEqual([2, '200.0005', '100.00025']); // continuous across it
    expect(at('50000')).toEqual([2, '2200', '1100']);
    expect(at('50000.01')).toEqual([3, '2200.001', '1100.0005']);
    expect(at('100000')).toEqual([3, '7200', '3600']);
  });

  it('is continuous at every bound (the amounts make each tier meet the next)', () => {
    for (const bound of ['10000', '50000']) {
      const i = bands.findIndex((b) => b.maxNotional?.eq(bound));
      const lower = bands[i]!;
      const upper = bands[i + 1]!;
      expect(s(d(bound).times(lower.mmr).minus(lower.mma))).toBe(s(d(bound).times(upper.mmr).minus(upper.mma)));
      expect(s(d(bound).times(lower.imr).minus(lower.ima))).toBe(s(d(bound).times(upper.imr).minus(upper.ima)));
    }
  });

  it('sums each position in its own tier, and GET /positions shows tier and margins per position', () => {
    const rules = rulesWith({ tiers: TIERS });
    // BTC: 1 @ mark 60000 → N 60000, tier 3: IM 6000 − 2800 = 3200, MM 3000 − 1400 = 1600
    // ETH: −2 @ mark 3000 → N 6000, tier 1: IM 120, MM 60
    const a = account('10000', { BTC: pos('1', '50000'), ETH: pos('-2', '3000') });
    const v = valueAccount(a, marks({ BTC: '60000', ETH: '3000' }), rules);
    expect(v.positions.map((p) => [p.symbol, p.tier, s(p.initialMargin), s(p.maintenanceMargin)])).toEqual([
      ['BTC', 3, '3200', '1600'],
      ['ETH', 1, '120', '60'],
    ]);
    expect([s(v.initialMargin), s(v.maintenanceMargin)]).toEqual(['3320', '1660']);
  });

  it('one default tier reproduces the flat rates exactly, whatever the book', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: -(10 ** 9), max: 10 ** 9 }).filter((q) => q !== 0), fc.integer({ min: 1, max: 10 ** 9 }), fc.integer({ min: 1, max: 10 ** 9 })), {
          minLength: 1,
          maxLength: 6,
        }),
        (positions) => {
          const a = account(
            '1000',
            Object.fromEntries(positions.map(([q, e], i) => [`S${i}`, pos(d(q).div(1000).toString(), d(e).div(100).toString())])),
          );
          const m = marks(Object.fromEntries(positions.map(([, , mk], i) => [`S${i}`, d(mk).div(100).toString()])));
          const t = marginTotals(a, m, rulesWith({}));
          expect(s(t.maintenanceMargin)).toBe(s(t.notional.times('0.1')));
          expect(s(t.initialMargin)).toBe(s(t.notional.times('0.2')));
        },
      ),
    );
  });
});

describe('liquidation price', () => {
  /** equity − maintenance at `price` on `symbol`, the other marks as given. */
  const cushion = (a: AccountState, m: Map<string, Dec>, symbol: string, price: Dec, rules: MarginRules) => {
    const t = marginTotals(a, new Map([...m, [symbol, price]]), rules);
    return t.equity.minus(t.maintenanceMargin);
  };

  it('is where equity meets maintenance: a long in the flat tier (worked example)', () => {
    // 1 @ 50000 on 14000: equity m − 36000 = 0.1·m at m = 40000.
    const a = account('14000', { BTC: pos('1', '50000') });
    expect(s(liquidationPrices(a, marks({ BTC: '50000' }), rulesWith({})).get('BTC')!)).toBe('40000');
  });

  it('crosses tiers: a long whose threshold falls in the second tier', () => {
    // 2 @ 20000 on 4000 of cash. At m the notional is 2m; in tier 2 (N ≤ 50000):
    // equity 4000 + 2(m − 20000) = 2m − 36000, MM = 2m·0.025 − 150 = 0.05m − 150;
    // equal at 1.95m = 35850 → m = 18384.615384615384615385 (N ≈ 36769, tier 2 indeed).
    const a = account('4000', { BTC: pos('2', '20000') });
    const price = liquidationPrices(a, marks({ BTC: '20000' }), rulesWith({ tiers: TIERS })).get('BTC')!;
    expect(s(price)).toBe('18384.615384615384615385');
  });

  it('is null when no positive price puts the account at maintenance', () => {
    // A short with a huge cushion still has one; a long fully paid for has none above 0.
    const a = account('100000', { BTC: pos('1', '50000') });
    expect(liquidationPrices(a, marks({ BTC: '50000' }), rulesWith({})).get('BTC')).toBeNull();
  });

  it('property: equity − maintenance changes sign at the price (cross margin, other marks held, tiers respected)', () => {
    const rules = rulesWith({ tiers: TIERS });
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10 ** 6 }),
        fc.integer({ min: -500, max: 500 }).filter((q) => q !== 0),
        fc.integer({ min: 1000, max: 100000 }),
        fc.integer({ min: -50, max: 50 }).filter((q) => q !== 0),
        fc.integer({ min: 100, max: 5000 }),
        (cash, q1, e1, q2, e2) => {
          const a = account(String(cash), { A: pos(d(q1).div(100).toString(), String(e1)), B: pos(String(q2), String(e2)) });
          const m = marks({ A: String(e1), B: String(e2) });
          const price = liquidationPrices(a, m, rules).get('A');
          if (price === undefined || price === null) return;
          // At the price (rounded to 18 places) the cushion is within a rounding of zero...
          const atPrice = cushion(a, m, 'A', price, rules);
          expect(atPrice.abs().lte(d('1e-12'))).toBe(true);
          // ...and it has opposite signs a little either side.
          const eps = price.times('1e-9');
          const above = cushion(a, m, 'A', price.plus(eps), rules);
          const below = cushion(a, m, 'A', price.minus(eps), rules);
          if (q1 > 0) expect(above.isPos() && below.isNeg()).toBe(true);
          else expect(above.isNeg() && below.isPos()).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('partial liquidation', () => {
  const partial = (p: Partial<RiskParams> = {}) => rulesWith({ liquidationMode: 'partial', liquidationBuffer: ZERO, lotSize: d('0.1'), ...p });

  it('reduces by the slice that exactly restores the target', () => {
    // 10 @ 100 on 145, mark 90: equity 45, MM 90. Keep E ≥ MM_after = 9·(10 − Δ): Δ ≥ 5 exactly.
    const plan = planLiquidation(account('145', { X: pos('10', '100') }), marks({ X: '90' }), partial())!;
    expect(plan.mode).toBe('partial');
    expect(plan.fills.map((f) => [f.side, s(f.quantity), s(f.price), s(f.realisedPnl)])).toEqual([['SELL', '5', '90', '-50']]);
    expect(s(plan.positionsAfter.get('X')!.quantity)).toBe('5');
    expect(s(plan.balanceAfter)).toBe('95');
    const after = marginTotals({ balance: plan.balanceAfter, positions: plan.positionsAfter }, marks({ X: '90' }), partial());
    expect([s(after.equity), s(after.maintenanceMargin)]).toEqual(['45', '45']);
  });

  it('rounds the slice up to the lot size', () => {
    // On 150: equity 50, need Δ ≥ 40/9 = 4.44…; lots of 1 → 5 (4 would leave MM 54 > 50).
    const plan = planLiquidation(account('150', { X: pos('10', '100') }), marks({ X: '90' }), partial({ lotSize: d('1') }))!;
    expect(s(plan.fills[0]!.quantity)).toBe('5');
    // With lots of 0.1 → 4.5 (4.4 leaves MM 50.4 > 50).
    const fine = planLiquidation(account('150', { X: pos('10', '100') }), marks({ X: '90' }), partial())!;
    expect(s(fine.fills[0]!.quantity)).toBe('4.5');
  });

  it('counts the fee in the equity after: 45 − 0.9Δ ≥ 90 − 9Δ needs Δ ≥ 5.55…, so 5.6', () => {
    const plan = planLiquidation(account('145', { X: pos('10', '100') }), marks({ X: '90' }), partial({ liquidationFeeRate: d('0.01') }))!;
    expect(s(plan.fills[0]!.quantity)).toBe('5.6');
    expect(s(plan.fee)).toBe('5.04'); // 0.01 · 5.6 · 90
    expect(s(plan.balanceAfter)).toBe('83.96'); // 145 − 56 − 5.04
  });

  it('reduces the position with the largest maintenance margin first, then the next', () => {
    // A: 10 @ 100 (MM at 90: 90), B: 1 @ 100 (MM at 100: 10). On 150 at A = 90: equity 50, MM 100.
    // A alone: 50 ≥ 9·(10 − Δ) + 10 → Δ ≥ 5.55… → 5.6; B untouched.
    const plan = planLiquidation(account('150', { A: pos('10', '100'), B: pos('1', '100') }), marks({ A: '90', B: '100' }), partial())!;
    expect(plan.fills.map((f) => [f.symbol, s(f.quantity)])).toEqual([['A', '5.6']]);
    // When the whole of A is not enough, it is closed and B reduced: equity 5.5 after A is gone.
    const deep = planLiquidation(account('105.5', { A: pos('10', '100'), B: pos('1', '100') }), marks({ A: '90', B: '100' }), partial())!;
    expect(deep.fills.map((f) => [f.symbol, s(f.quantity)])).toEqual([
      ['A', '10'],
      ['B', '0.5'],
    ]);
    expect(deep.mode).toBe('partial');
  });

  it('is full when a market is not in partial mode, or equity is not positive', () => {
    const full = planLiquidation(account('145', { X: pos('10', '100') }), marks({ X: '90' }), rulesWith({}))!;
    expect([full.mode, s(full.fills[0]!.quantity)]).toEqual(['full', '10']);
    const underwater = planLiquidation(account('90', { X: pos('10', '100') }), marks({ X: '90' }), partial())!;
    expect([underwater.mode, s(underwater.fills[0]!.quantity), s(underwater.shortfall)]).toEqual(['full', '10', '10']);
  });

  it('property: the account ends at or above (1 + b)·MM or fully closed, and money is conserved', () => {
    const seen = { partial: 0, full: 0, fee: 0 };
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: -300, max: 300 }).filter((q) => q !== 0), fc.integer({ min: 50, max: 150 }), fc.integer({ min: 50, max: 150 })), {
          minLength: 1,
          maxLength: 4,
        }),
        fc.integer({ min: 1, max: 20000 }),
        fc.constantFrom('0', '0.005', '0.02'),
        fc.constantFrom('0', '0.01', '0.05'),
        fc.constantFrom('0.01', '0.1', '1'),
        fc.boolean(),
        (positions, cash, fee, buffer, lot, tiered) => {
          const rules = partial({ liquidationFeeRate: d(fee), liquidationBuffer: d(buffer), lotSize: d(lot), ...(tiered ? { tiers: TIERS } : {}) });
          const a = account(
            d(cash).div(10).toString(),
            Object.fromEntries(positions.map(([q, e], i) => [`S${i}`, pos(d(q).div(10).toString(), String(e))])),
          );
          const m = marks(Object.fromEntries(positions.map(([, , mk], i) => [`S${i}`, String(mk)])));
          const plan = planLiquidation(a, m, rules);
          if (plan === null) {
            expect(isLiquidatable(a, m, rules)).toBe(false);
            return;
          }
          seen[plan.mode]++;
          if (plan.fee.gt(0)) seen.fee++;
          const after: AccountState = { balance: plan.balanceAfter, positions: plan.positionsAfter };
          const t = marginTotals(after, m, rules);
          if (plan.positionsAfter.size > 0) {
            expect(plan.mode).toBe('partial');
            expect(t.equity.gte(t.maintenanceMargin.times(d(1).plus(buffer)))).toBe(true);
            expect(isLiquidatable(after, m, rules)).toBe(false);
          }
          // Conservation: balance after = before + realised − fee + shortfall (the deficit forgiven).
          expect(s(plan.balanceAfter)).toBe(s(a.balance.plus(plan.realisedPnl).minus(plan.fee).plus(plan.shortfall)));
          // Closing at mark moves no equity: only the fee (and a forgiven shortfall) does.
          const before = marginTotals(a, m, rules);
          expect(s(t.equity)).toBe(s(before.equity.minus(plan.fee).plus(plan.shortfall)));
          // A fee never creates a shortfall.
          if (plan.fee.gt(0)) expect(plan.shortfall.isZero()).toBe(true);
        },
      ),
      { numRuns: 1500 },
    );
    // The generator reaches every kind of plan (the property is not vacuous).
    expect(seen.partial).toBeGreaterThan(20);
    expect(seen.full).toBeGreaterThan(20);
    expect(seen.fee).toBeGreaterThan(20);
  });
});

describe('liquidation fee', () => {
  it('is charged on the notional closed in a full liquidation', () => {
    // 1 @ 100 on 12, mark 89: equity 1 < MM 8.9. Closing: balance 12 − 11 = 1; fee 0.01·89 = 0.89.
    const plan = planLiquidation(account('12', { X: pos('1', '100') }), marks({ X: '89' }), rulesWith({ liquidationFeeRate: d('0.01') }))!;
    expect([s(plan.fee), s(plan.balanceAfter), s(plan.shortfall)]).toEqual(['0.89', '0.11', '0']);
  });

  it('is capped by what is left of a positive balance after closing, so it never creates a shortfall', () => {
    // On 11.5: closing leaves 0.5, so the fee is 0.5, not 0.89.
    const plan = planLiquidation(account('11.5', { X: pos('1', '100') }), marks({ X: '89' }), rulesWith({ liquidationFeeRate: d('0.01') }))!;
    expect([s(plan.fee), s(plan.balanceAfter), s(plan.shortfall)]).toEqual(['0.5', '0', '0']);
    // On 10: closing leaves −1: no fee at all, and a shortfall of 1.
    const deep = planLiquidation(account('10', { X: pos('1', '100') }), marks({ X: '89' }), rulesWith({ liquidationFeeRate: d('0.01') }))!;
    expect([s(deep.fee), s(deep.balanceAfter), s(deep.shortfall)]).toEqual(['0', '0', '1']);
  });
});

describe('a flat account with a negative balance', () => {
  it('is liquidatable: nothing to close, balance to 0, the deficit a shortfall', () => {
    const a = account('-50');
    expect(isLiquidatable(a, marks(), rulesWith({}))).toBe(true);
    const plan = planLiquidation(a, marks(), rulesWith({}))!;
    expect([plan.fills.length, s(plan.balanceAfter), s(plan.shortfall), plan.mode]).toEqual([0, '0', '50', 'full']);
  });

  it('a flat account at zero or above is not', () => {
    expect(isLiquidatable(account('0'), marks(), rulesWith({}))).toBe(false);
  });
});
