/**
 * Pure liquidation math: when an account is liquidatable, what
 * closing it out books, and the threshold mark of each position.
 *
 * Rates are the defaults unless a test says otherwise: initial 20%, maintenance 10%.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { D, type Dec } from '../../src/domain/decimal.js';
import { isLiquidatable, liquidationThresholds, planLiquidation, type Threshold } from '../../src/domain/liquidation.js';
import { flatRules, marginTotals, type AccountState, type Position } from '../../src/domain/margin.js';
import { scoreOf, step } from '../../src/store/risk-index.js';

const d = (v: string | number) => new D(v);
const rates = flatRules({ initial: d('0.2'), maintenance: d('0.1') });
const pos = (quantity: string, entryPrice: string): Position => ({ quantity: d(quantity), entryPrice: d(entryPrice) });
const account = (balance: string, positions: Record<string, Position> = {}): AccountState => ({
  balance: d(balance),
  positions: new Map(Object.entries(positions)),
});
const marks = (m: Record<string, string> = {}) => new Map(Object.entries(m).map(([k, v]) => [k, d(v)]));
const s = (x: Dec) => x.toString();
const priceOf = (t: Threshold | undefined): Dec => {
  if (!t || t.price === null || t.price === 'always') throw new Error(`expected a numeric threshold, got ${String(t?.price)}`);
  return t.price;
};

// A long of 1 BTC entered at 50000 on 14000 of cash:
//   equity(m) = 14000 + (m − 50000) = m − 36000,  maintenance(m) = 0.1·m
//   equal when 0.9·m = 36000, i.e. m = 40000 (equity = maintenance = 4000).
const long = account('14000', { 'BTC-PERP': pos('1', '50000') });
// A short of 1 ETH entered at 3000 on 850 of cash:
//   equity(m) = 850 − (m − 3000) = 3850 − m,  maintenance(m) = 0.1·m
//   equal when 1.1·m = 3850, i.e. m = 3500 (equity = maintenance = 350).
const short = account('850', { 'ETH-PERP': pos('-1', '3000') });

describe('isLiquidatable', () => {
  it('is false exactly at maintenance and true one cent below it (long)', () => {
    // m = 40000: equity 4000 = maintenance 4000 → not liquidatable
    expect(isLiquidatable(long, marks({ 'BTC-PERP': '40000' }), rates)).toBe(false);
    // m = 39999.99: equity 3999.99 < maintenance 3999.999 → liquidatable
    expect(isLiquidatable(long, marks({ 'BTC-PERP': '39999.99' }), rates)).toBe(true);
    // m = 40000.01: equity 4000.01 ≥ maintenance 4000.001
    expect(isLiquidatable(long, marks({ 'BTC-PERP': '40000.01' }), rates)).toBe(false);
  });

  it('is false exactly at maintenance and true one cent past it (short)', () => {
    // m = 3500: equity 350 = maintenance 350
    expect(isLiquidatable(short, marks({ 'ETH-PERP': '3500' }), rates)).toBe(false);
    // m = 3500.01: equity 349.99 < maintenance 350.001
    expect(isLiquidatable(short, marks({ 'ETH-PERP': '3500.01' }), rates)).toBe(true);
  });

  it('is exact where binary floating point is not', () => {
    // 3 units entered at 0.1 on 0.03 of cash, marked at 0.1:
    //   equity = 0.03 + 3·(0.1 − 0.1) = 0.03,  maintenance = 0.1·3·0.1 = 0.03 → exactly at maintenance, not liquidatable.
    // In doubles 3 * 0.1 * 0.1 = 0.030000000000000006 > 0.03, which would wrongly liquidate it.
    expect(isLiquidatable(account('0.03', { X: pos('3', '0.1') }), marks({ X: '0.1' }), rates)).toBe(false);
    // 1e-18 less cash: equity 0.029999999999999999 < 0.03
    expect(isLiquidatable(account('0.029999999999999999', { X: pos('3', '0.1') }), marks({ X: '0.1' }), rates)).toBe(true);
  });

  it('is never true for an account without positions, even with no cash', () => {
    expect(isLiquidatable(account('0'), marks(), rates)).toBe(false);
  });

  it('values a symbol without a mark at its entry price', () => {
    // 1 BTC at 50000 on 5000 of cash, no mark: equity 5000 = maintenance 0.1·50000 → not liquidatable;
    // on 4999.99 of cash it is (equity 4999.99 < 5000).
    expect(isLiquidatable(account('5000', { 'BTC-PERP': pos('1', '50000') }), marks(), rates)).toBe(false);
    expect(isLiquidatable(account('4999.99', { 'BTC-PERP': pos('1', '50000') }), marks(), rates)).toBe(true);
  });
});

describe('planLiquidation', () => {
  it('returns null for an account that is not liquidatable (exactly at maintenance)', () => {
    expect(planLiquidation(long, marks({ 'BTC-PERP': '40000' }), rates)).toBeNull();
  });

  it('closes a long with a SELL of its full size at the mark', () => {
    // m = 39000: equity 14000 − 11000 = 3000 < maintenance 3900.
    // SELL 1 @ 39000 realises 1·(39000 − 50000) = −11000; balance 14000 − 11000 = 3000, no shortfall.
    const plan = planLiquidation(long, marks({ 'BTC-PERP': '39000' }), rates)!;
    expect(plan).not.toBeNull();
    expect(s(plan.equity)).toBe('3000');
    expect(s(plan.maintenanceMargin)).toBe('3900');
    const fills = plan.fills.map((f) => ({
      symbol: f.symbol,
      side: f.side,
      quantity: s(f.quantity),
      price: s(f.price),
      realisedPnl: s(f.realisedPnl),
      positionQuantity: s(f.closedQuantity),
      entryPrice: s(f.entryPrice),
      balanceAfter: s(f.balanceAfter),
    }));
    expect(fills).toEqual([
      { symbol: 'BTC-PERP', side: 'SELL', quantity: '1', price: '39000', realisedPnl: '-11000', positionQuantity: '1', entryPrice: '50000', balanceAfter: '3000' },
    ]);
    expect(s(plan.realisedPnl)).toBe('-11000');
    expect(s(plan.shortfall)).toBe('0');
    expect(s(plan.balanceAfter)).toBe('3000');
  });

  it('closes a short with a BUY of its full size at the mark', () => {
    // 2 ETH short at 3000 on 1000 of cash, m = 3400: equity 1000 − 2·400 = 200 < maintenance 680.
    // BUY 2 @ 3400 realises 2·(−1)·(3400 − 3000) = −800; balance 200.
    const plan = planLiquidation(account('1000', { 'ETH-PERP': pos('-2', '3000') }), marks({ 'ETH-PERP': '3400' }), rates)!;
    expect(s(plan.equity)).toBe('200');
    expect(s(plan.maintenanceMargin)).toBe('680');
    expect(plan.fills).toHaveLength(1);
    const [fill] = plan.fills;
    expect([fill!.side, s(fill!.quantity), s(fill!.price), s(fill!.realisedPnl), s(fill!.closedQuantity)]).toEqual(['BUY', '2', '3400', '-800', '-2']);
    expect(s(plan.balanceAfter)).toBe('200');
    expect(s(plan.shortfall)).toBe('0');
  });

  it('values and closes every symbol of a cross-margin account at its own mark', () => {
    // long 1 BTC at 50000, short 10 ETH at 3000, cash 10000; marks BTC 45000, ETH 3300.
    //   unrealised = 1·(45000 − 50000) + (−10)·(3300 − 3000) = −5000 − 3000 = −8000 → equity 2000
    //   notional = 45000 + 33000 = 78000 → maintenance 7800 > 2000
    // Closing: SELL 1 BTC @ 45000 (−5000), BUY 10 ETH @ 3300 (−3000); balance 2000.
    const a = account('10000', { 'ETH-PERP': pos('-10', '3000'), 'BTC-PERP': pos('1', '50000') });
    const plan = planLiquidation(a, marks({ 'BTC-PERP': '45000', 'ETH-PERP': '3300' }), rates)!;
    expect(s(plan.equity)).toBe('2000');
    expect(s(plan.maintenanceMargin)).toBe('7800');
    expect(plan.fills.map((f) => [f.symbol, f.side, s(f.quantity), s(f.price), s(f.realisedPnl), s(f.balanceAfter)])).toEqual([
      ['BTC-PERP', 'SELL', '1', '45000', '-5000', '5000'],
      ['ETH-PERP', 'BUY', '10', '3300', '-3000', '2000'],
    ]);
    expect(s(plan.realisedPnl)).toBe('-8000');
    expect(s(plan.balanceAfter)).toBe('2000');
    expect(s(plan.shortfall)).toBe('0');
  });

  it('closes a symbol that has no mark at its entry price (no PnL on it)', () => {
    // long 1 BTC at 50000 marked 40000, long 100 NEW at 10 with no mark, cash 11000:
    //   equity = 11000 − 10000 + 0 = 1000; notional = 40000 + 100·10 = 41000 → maintenance 4100
    // Closing: SELL 1 BTC @ 40000 (−10000), SELL 100 NEW @ 10 (0); balance 1000.
    const a = account('11000', { 'BTC-PERP': pos('1', '50000'), 'NEW-PERP': pos('100', '10') });
    const plan = planLiquidation(a, marks({ 'BTC-PERP': '40000' }), rates)!;
    expect(s(plan.equity)).toBe('1000');
    expect(s(plan.maintenanceMargin)).toBe('4100');
    expect(plan.fills.map((f) => [f.symbol, f.side, s(f.quantity), s(f.price), s(f.realisedPnl)])).toEqual([
      ['BTC-PERP', 'SELL', '1', '40000', '-10000'],
      ['NEW-PERP', 'SELL', '100', '10', '0'],
    ]);
    expect(s(plan.balanceAfter)).toBe('1000');
  });

  it('sets a bankrupt balance to 0 and records the deficit as shortfall', () => {
    // long 1 BTC at 50000 on 10000 of cash, the mark gaps to 30000:
    //   equity = 10000 − 20000 = −10000 < maintenance 3000
    //   SELL 1 @ 30000 realises −20000 → balance −10000 → set to 0, shortfall 10000
    const plan = planLiquidation(account('10000', { 'BTC-PERP': pos('1', '50000') }), marks({ 'BTC-PERP': '30000' }), rates)!;
    expect(s(plan.equity)).toBe('-10000');
    expect(s(plan.realisedPnl)).toBe('-20000');
    expect(s(plan.balanceAfter)).toBe('0');
    expect(s(plan.shortfall)).toBe('10000');
  });

  it('computes the shortfall over all closing fills of a bankrupt cross-margin account', () => {
    // cash 1000; long 1 A at 100 marked 50 (−50), short 2 B at 10 marked 600 (−2·590 = −1180):
    //   equity = 1000 − 1230 = −230; balance after both fills −230 → 0, shortfall 230.
    const a = account('1000', { A: pos('1', '100'), B: pos('-2', '10') });
    const plan = planLiquidation(a, marks({ A: '50', B: '600' }), rates)!;
    expect(plan.fills.map((f) => s(f.balanceAfter))).toEqual(['950', '-230']);
    expect(s(plan.realisedPnl)).toBe('-1230');
    expect(s(plan.balanceAfter)).toBe('0');
    expect(s(plan.shortfall)).toBe('230');
  });

  it('has no shortfall when the balance lands exactly on zero', () => {
    // cash 1000, long 10 at 200 marked 100: realised −1000 → balance 0 exactly, shortfall 0.
    const plan = planLiquidation(account('1000', { A: pos('10', '200') }), marks({ A: '100' }), rates)!;
    expect(s(plan.balanceAfter)).toBe('0');
    expect(s(plan.shortfall)).toBe('0');
  });
});

/** equity − maintenance at these marks. */
const cushion = (a: AccountState, m: Map<string, Dec>) => {
  const t = marginTotals(a, m, rates);
  return t.equity.minus(t.maintenanceMargin);
};

const sideAndPrice = (t: Threshold | undefined) => ({ side: t?.side, price: t?.price });

describe('liquidationThresholds', () => {
  it('puts a long at maintenance exactly at its threshold, liquidatable just below, safe just above', () => {
    // threshold = (q·e − C) / (q − r·|q|) = (50000 − 14000) / 0.9 = 40000
    const t = liquidationThresholds(long, marks({ 'BTC-PERP': '45000' }), rates).get('BTC-PERP')!;
    expect(t.side).toBe('long');
    expect(s(priceOf(t))).toBe('40000');
    expect(s(cushion(long, marks({ 'BTC-PERP': '40000' })))).toBe('0'); // equity 4000 == maintenance 4000
    expect(isLiquidatable(long, marks({ 'BTC-PERP': '39999.999999' }), rates)).toBe(true);
    expect(isLiquidatable(long, marks({ 'BTC-PERP': '40000' }), rates)).toBe(false);
    expect(isLiquidatable(long, marks({ 'BTC-PERP': '40000.000001' }), rates)).toBe(false);
  });

  it('puts a short at maintenance exactly at its threshold, liquidatable just above, safe just below', () => {
    // threshold = (q·e − C) / (q − r·|q|) = (−3000 − 850) / (−1 − 0.1) = 3850 / 1.1 = 3500
    const t = liquidationThresholds(short, marks(), rates).get('ETH-PERP')!;
    expect(t.side).toBe('short');
    expect(s(priceOf(t))).toBe('3500');
    expect(s(cushion(short, marks({ 'ETH-PERP': '3500' })))).toBe('0'); // equity 350 == maintenance 350
    expect(isLiquidatable(short, marks({ 'ETH-PERP': '3500.000001' }), rates)).toBe(true);
    expect(isLiquidatable(short, marks({ 'ETH-PERP': '3500' }), rates)).toBe(false);
    expect(isLiquidatable(short, marks({ 'ETH-PERP': '3499.999999' }), rates)).toBe(false);
  });

  it("gives each symbol of a two-symbol account the threshold at the other's current mark", () => {
    // long 1 BTC at 50000, short 10 ETH at 3000, cash 19254; marks BTC 45000, ETH 3200.
    // BTC threshold, ETH fixed at 3200:
    //   ETH part of equity − maintenance = −10·(3200 − 3000) − 0.1·10·3200 = −2000 − 3200 = −5200
    //   C = 19254 − 5200 = 14054; threshold = (50000 − 14054) / 0.9 = 35946 / 0.9 = 39940
    // ETH threshold, BTC fixed at 45000:
    //   BTC part = 1·(45000 − 50000) − 0.1·45000 = −9500; C = 19254 − 9500 = 9754
    //   threshold = (−10·3000 − 9754) / (−10 − 1) = 39754 / 11 = 3614
    const a = account('19254', { 'BTC-PERP': pos('1', '50000'), 'ETH-PERP': pos('-10', '3000') });
    const current = { 'BTC-PERP': '45000', 'ETH-PERP': '3200' };
    const ts = liquidationThresholds(a, marks(current), rates);
    expect(ts.get('BTC-PERP')).toMatchObject({ side: 'long' });
    expect(ts.get('ETH-PERP')).toMatchObject({ side: 'short' });
    expect(s(priceOf(ts.get('BTC-PERP')))).toBe('39940');
    expect(s(priceOf(ts.get('ETH-PERP')))).toBe('3614');

    // BTC at 39940, ETH 3200: equity = 19254 − 10060 − 2000 = 7194; notional 39940 + 32000 → maintenance 7194
    expect(s(cushion(a, marks({ ...current, 'BTC-PERP': '39940' })))).toBe('0');
    expect(isLiquidatable(a, marks({ ...current, 'BTC-PERP': '39939.99' }), rates)).toBe(true);
    expect(isLiquidatable(a, marks({ ...current, 'BTC-PERP': '39940' }), rates)).toBe(false);
    expect(isLiquidatable(a, marks({ ...current, 'BTC-PERP': '39940.01' }), rates)).toBe(false);
    // ETH at 3614, BTC 45000: equity = 19254 − 5000 − 6140 = 8114; notional 45000 + 36140 → maintenance 8114
    expect(s(cushion(a, marks({ ...current, 'ETH-PERP': '3614' })))).toBe('0');
    expect(isLiquidatable(a, marks({ ...current, 'ETH-PERP': '3614.01' }), rates)).toBe(true);
    expect(isLiquidatable(a, marks({ ...current, 'ETH-PERP': '3614' }), rates)).toBe(false);
    expect(isLiquidatable(a, marks({ ...current, 'ETH-PERP': '3613.99' }), rates)).toBe(false);
  });

  it('lands within 1e-15 of maintenance at a threshold that does not come out exact', () => {
    // 3 at 7 on cash 5, marked 6: threshold = (21 − 5) / (3 − 0.3) = 16 / 2.7 = 5.925925… (rounded to 18 places)
    const a = account('5', { X: pos('3', '7') });
    const t = priceOf(liquidationThresholds(a, marks({ X: '6' }), rates).get('X'));
    expect(s(t)).toBe('5.925925925925925926');
    // f(m) = 2.7·m − 16 moves by 2.7 per unit of m, so a rounding of ≤ 5e-19 leaves |f| ≤ 1.35e-18
    expect(cushion(a, marks({ X: s(t) })).abs().lte('1e-15')).toBe(true);
  });

  it('computes the same position object at another maintenance rate from scratch (a remembered slope is per rate)', () => {
    const a = account('5', { X: pos('3', '7') });
    expect(s(priceOf(liquidationThresholds(a, marks({ X: '6' }), rates).get('X')))).toBe('5.925925925925925926');
    // r = 0.2: (21 − 5) / (3 − 0.6) = 16 / 2.4 = 6.666…
    const r2 = flatRules({ initial: d('0.3'), maintenance: d('0.2') });
    expect(s(priceOf(liquidationThresholds(a, marks({ X: '6' }), r2).get('X')))).toBe('6.666666666666666667');
    expect(s(priceOf(liquidationThresholds(a, marks({ X: '6' }), rates).get('X')))).toBe('5.925925925925925926');
    // The same price object too: the position's remembered valuation is reused, its own part k = q·e + pnl − r·notional is not
    const m = marks({ X: '6' });
    expect(s(priceOf(liquidationThresholds(a, m, rates).get('X')))).toBe('5.925925925925925926');
    expect(s(priceOf(liquidationThresholds(a, m, r2).get('X')))).toBe('6.666666666666666667');
    expect(s(priceOf(liquidationThresholds(a, m, rates).get('X')))).toBe('5.925925925925925926');
  });

  it('keeps what it remembers off the value: a valued position still equals a fresh one, in comparisons, copies and JSON', () => {
    const p = pos('3', '7');
    const a = account('5', { X: p });
    liquidationThresholds(a, marks({ X: '6' }), rates);
    expect(Object.getOwnPropertySymbols(p).length).toBeGreaterThan(0); // it did remember something on it
    expect(p).toEqual(pos('3', '7'));
    expect({ ...p }).toEqual(pos('3', '7'));
    expect(Object.keys(p)).toEqual(['quantity', 'entryPrice']);
    expect(JSON.stringify(p)).toBe(JSON.stringify(pos('3', '7')));
  });

  it('reports "always" or "never" when the mark cannot move the account (maintenance rate 100%, long)', () => {
    // r = 1: a long's equity − maintenance = C − q·e + m·(q − q) does not depend on m
    const full = flatRules({ initial: d('1'), maintenance: d('1') });
    // C − q·e = 100 − 1·50 = 50 ≥ 0 → never liquidated by this symbol
    expect(sideAndPrice(liquidationThresholds(account('100', { X: pos('1', '50') }), marks(), full).get('X'))).toEqual({ side: 'long', price: null });
    // C − q·e = 40 − 50 < 0 → already liquidatable whatever the mark
    expect(sideAndPrice(liquidationThresholds(account('40', { X: pos('1', '50') }), marks(), full).get('X'))).toEqual({ side: 'long', price: 'always' });
  });
});

describe('thresholds agree with isLiquidatable (property-based)', () => {
  /** A positive decimal: an integer in [1, max] scaled down by 10^places. */
  const positive = (max: number, places: number) => fc.integer({ min: 1, max }).map((n) => d(n).div(d(10).pow(places)));
  const positionArb = fc.record({ long: fc.boolean(), size: positive(1_000_000, 3), entry: positive(10_000_000, 2) });
  const accountArb = fc.record({
    balance: fc.integer({ min: 0, max: 100_000_000 }).map((n) => d(n).div(100)),
    positions: fc.array(positionArb, { minLength: 1, maxLength: 2 }),
    // each symbol's mark, or none (then it is valued at its entry)
    marks: fc.array(fc.option(positive(10_000_000, 2), { nil: undefined, freq: 5 }), { minLength: 2, maxLength: 2 }),
    maintenance: fc.constantFrom('0.05', '0.1', '0.25', '0.5'),
  });

  it('liquidatable ⇔ (long: mark < threshold; short: mark > threshold), per symbol with the others fixed', () => {
    let checked = 0;
    fc.assert(
      fc.property(accountArb, ({ balance, positions, marks: ms, maintenance }) => {
        const r = flatRules({ initial: d(maintenance).times(2), maintenance: d(maintenance) });
        const symbols = ['A', 'B'];
        const state: AccountState = {
          balance,
          positions: new Map(positions.map((p, i) => [symbols[i]!, { quantity: p.long ? p.size : p.size.neg(), entryPrice: p.entry }])),
        };
        const m = new Map<string, Dec>();
        positions.forEach((_, i) => {
          if (ms[i] !== undefined) m.set(symbols[i]!, ms[i]);
        });
        const liquidatable = isLiquidatable(state, m, r);
        const thresholds = liquidationThresholds(state, m, r);
        for (const [symbol, p] of state.positions) {
          const t = thresholds.get(symbol)!;
          expect(t.side).toBe(p.quantity.isPos() ? 'long' : 'short');
          const price = priceOf(t); // r < 1: never "always" or "never"
          const mark = m.get(symbol) ?? p.entryPrice;
          // Too close to call with a threshold rounded to 18 places: skip.
          if (mark.minus(price).abs().lte(price.abs().times('1e-9'))) continue;
          const byRule = t.side === 'long' ? mark.lt(price) : mark.gt(price);
          expect(byRule, `${symbol}: mark ${s(mark)} threshold ${s(price)} (${t.side})`).toBe(liquidatable);
          checked++;
        }
      }),
      { numRuns: 2000 },
    );
    expect(checked).toBeGreaterThan(2000);
  });

  /** The generated account as state (symbols A and B), marks and rates. */
  const build = ({ balance, positions, marks: ms, maintenance }: typeof accountArb extends fc.Arbitrary<infer T> ? T : never) => {
    const r = flatRules({ initial: d(maintenance).times(2), maintenance: d(maintenance) });
    const state: AccountState = {
      balance,
      positions: new Map(positions.map((p, i) => [['A', 'B'][i]!, { quantity: p.long ? p.size : p.size.neg(), entryPrice: p.entry }])),
    };
    const m = new Map<string, Dec>();
    if (ms[0]) m.set('A', ms[0]);
    if (ms[1]) m.set('B', ms[1]);
    return { state, m, r };
  };

  it('stores each threshold in the risk index under a double on its safe side (rounded outward)', () => {
    let checked = 0;
    fc.assert(
      fc.property(accountArb, (generated) => {
        const { state, m, r } = build(generated);
        for (const t of liquidationThresholds(state, m, r).values()) {
          const exact = t.numerator.div(t.slope); // 200 significant digits: far finer than a double
          const score = scoreOf(t);
          // long: score = −(a double ≥ threshold); short: score = a double ≤ threshold
          const bound = t.side === 'long' ? d(String(-score)) : d(String(score));
          if (t.side === 'long') expect(bound.gte(exact), `long ${s(exact)} stored as ${-score}`).toBe(true);
          else expect(bound.lte(exact), `short ${s(exact)} stored as ${score}`).toBe(true);
          // and only a few units in the last place away
          expect(bound.minus(exact).abs().lte(exact.abs().times('1e-14').plus('1e-300'))).toBe(true);
          checked++;
        }
      }),
      { numRuns: 2000 },
    );
    expect(checked).toBeGreaterThan(2000);
  });

  it('finds both outcomes among the random accounts (the property is not vacuous)', () => {
    const seen = new Set<boolean>();
    fc.assert(
      fc.property(accountArb, (generated) => {
        const { state, m, r } = build(generated);
        seen.add(isLiquidatable(state, m, r));
      }),
      { numRuns: 500 },
    );
    expect(seen).toEqual(new Set([true, false]));
  });
});

describe('stepping to a neighbouring double (the risk index rounds outward with it)', () => {
  it('moves to the next double up or down, across binades, signs, subnormals and the extremes', () => {
    const cases: [number, boolean, number][] = [
      [1, true, 1 + Number.EPSILON],
      [1, false, 1 - Number.EPSILON / 2], // below a power of two the spacing halves
      [-1, true, -(1 - Number.EPSILON / 2)],
      [-1, false, -(1 + Number.EPSILON)],
      [2 ** 53, true, 2 ** 53 + 2],
      [2 ** 53, false, 2 ** 53 - 1],
      [0, true, Number.MIN_VALUE],
      [0, false, -Number.MIN_VALUE],
      [Number.MIN_VALUE, false, 0],
      [Number.MIN_VALUE, true, 2 * Number.MIN_VALUE],
      [Number.MAX_VALUE, true, Infinity],
      [-Number.MAX_VALUE, false, -Infinity],
      [Infinity, true, Infinity],
      [Infinity, false, Number.MAX_VALUE],
      [-Infinity, true, -Number.MAX_VALUE],
    ];
    for (const [x, up, want] of cases) expect(step(x, up), `${x} ${up ? 'up' : 'down'}`).toBe(want);
    expect(step(NaN, true)).toBeNaN();
  });

  it('lands on the adjacent double on random doubles: the right way, nothing in between, and back again', () => {
    fc.assert(
      fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), (x, up) => {
        const y = step(x, up);
        expect(up ? y > x : y < x).toBe(true);
        if (!Number.isFinite(y)) return;
        // A double strictly between x and y would be (nearly) their midpoint; the midpoint rounds to one of them.
        const mid = x / 2 + y / 2;
        expect(mid === x || mid === y).toBe(true);
        if (x !== 0 && y !== 0) expect(step(y, !up)).toBe(x);
      }),
      { numRuns: 20_000 },
    );
  });
});
