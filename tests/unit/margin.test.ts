import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { D, type Dec } from '../../src/domain/decimal.js';
import {
  flatRules,
  marginTotals,
  applyFill,
  applyTrade,
  decideTrade,
  decideWithdrawal,
  valueAccount,
  withdrawable,
  type AccountState,
  type Position,
  type Side,
} from '../../src/domain/margin.js';

const d = (v: string | number) => new D(v);
const rates = flatRules({ initial: d('0.2'), maintenance: d('0.1') });
const pos = (quantity: string, entryPrice: string): Position => ({ quantity: d(quantity), entryPrice: d(entryPrice) });
const account = (balance: string, positions: Record<string, Position> = {}): AccountState => ({
  balance: d(balance),
  positions: new Map(Object.entries(positions)),
});
const marks = (m: Record<string, string> = {}) => new Map(Object.entries(m).map(([k, v]) => [k, d(v)]));
const s = (x: Dec | null | undefined) => (x === null || x === undefined ? x : x.toString());

describe('netting a fill into a position', () => {
  it('opens a long on a BUY with no position', () => {
    const r = applyFill(undefined, 'BUY', d('0.1'), d('50000'));
    expect(s(r.position?.quantity)).toBe('0.1');
    expect(s(r.position?.entryPrice)).toBe('50000');
    expect(s(r.realisedPnl)).toBe('0');
    expect(r.reduceOnly).toBe(false);
  });

  it('opens a short on a SELL with no position', () => {
    const r = applyFill(undefined, 'SELL', d('2'), d('3000'));
    expect(s(r.position?.quantity)).toBe('-2');
    expect(s(r.position?.entryPrice)).toBe('3000');
  });

  it('averages the entry when increasing', () => {
    // e' = (0.1·50000 + 0.1·52000) / 0.2 = 10200 / 0.2 = 51000
    const r = applyFill(pos('0.1', '50000'), 'BUY', d('0.1'), d('52000'));
    expect(s(r.position?.quantity)).toBe('0.2');
    expect(s(r.position?.entryPrice)).toBe('51000');
    expect(s(r.realisedPnl)).toBe('0');
  });

  it('rounds the average entry to 18 places, half-even', () => {
    // e' = (1·1 + 2·2) / 3 = 5/3 = 1.666666666666666667
    const r = applyFill(pos('1', '1'), 'BUY', d('2'), d('2'));
    expect(s(r.position?.entryPrice)).toBe('1.666666666666666667');
  });

  it('realises PnL on a reduce and keeps the entry', () => {
    // c = 0.05, pnl = 0.05 · (+1) · (53000 − 51000) = 100
    const r = applyFill(pos('0.2', '51000'), 'SELL', d('0.05'), d('53000'));
    expect(s(r.realisedPnl)).toBe('100');
    expect(s(r.position?.quantity)).toBe('0.15');
    expect(s(r.position?.entryPrice)).toBe('51000');
    expect(r.reduceOnly).toBe(true);
  });

  it('realises PnL on a short being bought back', () => {
    // c = 0.4, pnl = 0.4 · (−1) · (2900 − 3000) = 40
    const r = applyFill(pos('-1', '3000'), 'BUY', d('0.4'), d('2900'));
    expect(s(r.realisedPnl)).toBe('40');
    expect(s(r.position?.quantity)).toBe('-0.6');
  });

  it('removes the position when it closes exactly', () => {
    // pnl = 0.15 · (50000 − 51000) = −150
    const r = applyFill(pos('0.15', '51000'), 'SELL', d('0.15'), d('50000'));
    expect(r.position).toBeUndefined();
    expect(s(r.realisedPnl)).toBe('-150');
    expect(r.reduceOnly).toBe(true);
  });

  it('flips: closes the old side and opens the rest at the trade price', () => {
    // c = 0.1, pnl = 0.1 · (49000 − 50000) = −100; remainder −0.2 opens at 49000
    const r = applyFill(pos('0.1', '50000'), 'SELL', d('0.3'), d('49000'));
    expect(s(r.realisedPnl)).toBe('-100');
    expect(s(r.position?.quantity)).toBe('-0.2');
    expect(s(r.position?.entryPrice)).toBe('49000');
    expect(r.reduceOnly).toBe(false);
  });

  it('books realised PnL into the balance', () => {
    const r = applyTrade(account('1000', { 'BTC-PERP': pos('1', '100') }), { symbol: 'BTC-PERP', side: 'SELL', quantity: d('1'), price: d('130') });
    expect(s(r.after.balance)).toBe('1030');
    expect(r.after.positions.has('BTC-PERP')).toBe(false);
  });
});

describe('account valuation', () => {
  it('values the same position object again at every new mark (a remembered valuation is per price)', () => {
    const p = pos('0.1', '50000');
    const a = account('10000', { 'BTC-PERP': p });
    const at = (price: string) => marginTotals(a, marks({ 'BTC-PERP': price }), rates);
    expect([s(at('51000').equity), s(at('51000').notional)]).toEqual(['10100', '5100']);
    expect([s(at('49000').equity), s(at('49000').notional)]).toEqual(['9900', '4900']);
    const m = marks({ 'BTC-PERP': '52000' });
    expect(s(marginTotals(a, m, rates).equity)).toBe('10200');
    expect(s(marginTotals(a, m, rates).equity)).toBe('10200'); // remembered: the same answer
    expect(s(marginTotals(a, marks(), rates).equity)).toBe('10000'); // no mark: valued at entry
  });

  it('values positions at their marks', () => {
    // upnl = 0.1·(51000−50000) = 100; equity = 10100; notional = 0.1·51000 = 5100
    // IM = 1020, MM = 510, available = 9080, utilisation = 510/10100·100 = 5.049504950495049505 (18dp)
    const m = valueAccount(account('10000', { 'BTC-PERP': pos('0.1', '50000') }), marks({ 'BTC-PERP': '51000' }), rates);
    expect(s(m.unrealisedPnl)).toBe('100');
    expect(s(m.equity)).toBe('10100');
    expect(s(m.notional)).toBe('5100');
    expect(s(m.initialMargin)).toBe('1020');
    expect(s(m.maintenanceMargin)).toBe('510');
    expect(s(m.availableMargin)).toBe('9080');
    expect(s(m.utilisationPct)).toBe('5.049504950495049505');
    expect(m.status).toBe('healthy');
  });

  it('values a symbol with no mark at its entry price', () => {
    // short 2 @ 3000, no mark: upnl 0, notional 6000
    const m = valueAccount(account('5000', { 'ETH-PERP': pos('-2', '3000') }), marks(), rates);
    expect(s(m.unrealisedPnl)).toBe('0');
    expect(s(m.notional)).toBe('6000');
    expect(m.positions[0]?.markPrice).toBeNull();
  });

  it('sums across symbols (cross margin)', () => {
    // BTC: 1·(110−100) = 10, notional 110; ETH: −2·(45−50) = 10, notional 90
    const m = valueAccount(
      account('100', { BTC: pos('1', '100'), ETH: pos('-2', '50') }),
      marks({ BTC: '110', ETH: '45' }),
      rates,
    );
    expect(s(m.unrealisedPnl)).toBe('20');
    expect(s(m.notional)).toBe('200');
    expect(s(m.equity)).toBe('120');
  });

  it('reports utilisation 0 with no positions and null when equity ≤ 0 with positions', () => {
    expect(s(valueAccount(account('10'), marks(), rates).utilisationPct)).toBe('0');
    // equity = 10 + 1·(90 − 100) = 0
    expect(valueAccount(account('10', { X: pos('1', '100') }), marks({ X: '90' }), rates).utilisationPct).toBeNull();
  });

  it('classifies status at the exact boundaries', () => {
    // notional 100 → IM 20, MM 10; equity = balance (mark = entry)
    const at = (balance: string) => valueAccount(account(balance, { X: pos('1', '100') }), marks({ X: '100' }), rates).status;
    expect(at('20')).toBe('healthy'); // equity = IM
    expect(at('19.99')).toBe('margin_call');
    expect(at('10')).toBe('margin_call'); // equity = MM is not liquidatable
    expect(at('9.99')).toBe('liquidatable');
  });
});

describe('pre-trade check', () => {
  const btc = (side: Side, quantity: string, price: string) => ({ symbol: 'BTC-PERP', side, quantity: d(quantity), price: d(price) });

  it('accepts a trade whose initial margin the equity covers exactly', () => {
    // 0.1 @ 50000, mark 50000: IM = 0.2·5000 = 1000 = equity
    expect(decideTrade(account('1000'), btc('BUY', '0.1', '50000'), marks({ 'BTC-PERP': '50000' }), rates).accepted).toBe(true);
  });

  it('rejects a trade that breaches initial margin, reporting required and available', () => {
    const r = decideTrade(account('999.99'), btc('BUY', '0.1', '50000'), marks({ 'BTC-PERP': '50000' }), rates);
    expect(r.accepted).toBe(false);
    if (!r.accepted) {
      expect(s(r.required)).toBe('1000');
      expect(s(r.available)).toBe('999.99');
    }
  });

  it("counts the new trade's own unrealised PnL", () => {
    // Buy 0.1 @ 50000 with the mark at 60000: upnl = 1000, notional 6000, IM 1200.
    // Balance 200 → equity 1200 = IM: accepted. Balance 199 → rejected.
    const m = marks({ 'BTC-PERP': '60000' });
    expect(decideTrade(account('200'), btc('BUY', '0.1', '50000'), m, rates).accepted).toBe(true);
    expect(decideTrade(account('199'), btc('BUY', '0.1', '50000'), m, rates).accepted).toBe(false);
  });

  it('uses the trade price as the mark of a symbol that has none', () => {
    // No mark: valued at entry 50000 → IM 1000 on 0.1
    expect(decideTrade(account('1000'), btc('BUY', '0.1', '50000'), marks(), rates).accepted).toBe(true);
    expect(decideTrade(account('999'), btc('BUY', '0.1', '50000'), marks(), rates).accepted).toBe(false);
  });

  it('always accepts a reduce-only trade, even under water', () => {
    // long 1 @ 100, mark 50: equity = 10 − 50 < 0; selling 0.5 only reduces
    const st = account('10', { 'BTC-PERP': pos('1', '100') });
    expect(decideTrade(st, btc('SELL', '0.5', '50'), marks({ 'BTC-PERP': '50' }), rates).accepted).toBe(true);
    expect(decideTrade(st, btc('SELL', '1', '50'), marks({ 'BTC-PERP': '50' }), rates).accepted).toBe(true);
  });

  it('checks a flip past zero like any opening trade', () => {
    const st = account('10', { 'BTC-PERP': pos('1', '100') });
    expect(decideTrade(st, btc('SELL', '2', '50'), marks({ 'BTC-PERP': '50' }), rates).accepted).toBe(false);
  });
});

describe('withdrawal check', () => {
  it('allows up to min(balance, equity − IM)', () => {
    // balance 1000, long 0.1 @ 50000 marked 50000: IM 1000 → nothing free
    const st = account('1000', { 'BTC-PERP': pos('0.1', '50000') });
    expect(s(withdrawable(st, marks({ 'BTC-PERP': '50000' }), rates))).toBe('0');
    // marked 52000: equity 1200, IM 1040 → 160 free
    expect(s(withdrawable(st, marks({ 'BTC-PERP': '52000' }), rates))).toBe('160');
    expect(decideWithdrawal(st, d('160'), marks({ 'BTC-PERP': '52000' }), rates).accepted).toBe(true);
    const r = decideWithdrawal(st, d('160.01'), marks({ 'BTC-PERP': '52000' }), rates);
    expect(r.accepted).toBe(false);
    if (!r.accepted) {
      expect(s(r.required)).toBe('160.01');
      expect(s(r.available)).toBe('160');
    }
  });

  it('never lets unrealised profit be withdrawn beyond the cash balance', () => {
    // balance 100, upnl 10000 → equity huge, but only the 100 of cash can leave
    const st = account('100', { X: pos('1', '100') });
    expect(s(withdrawable(st, marks({ X: '10100' }), rates))).toBe('100');
    expect(decideWithdrawal(st, d('100.000000000000000001'), marks({ X: '10100' }), rates).accepted).toBe(false);
  });
});

// ---- properties

const decimalArb = (maxInt: number, places: number) =>
  fc.tuple(fc.integer({ min: 0, max: maxInt }), fc.integer({ min: 0, max: 10 ** places - 1 })).map(([i, f]) => d(`${i}.${String(f).padStart(places, '0')}`));
const positiveArb = (maxInt: number, places: number) => decimalArb(maxInt, places).filter((x) => x.gt(0));
const fillArb = fc.record({
  side: fc.constantFrom<Side>('BUY', 'SELL'),
  quantity: positiveArb(50, 4),
  price: positiveArb(100_000, 2),
});

describe('accounting invariants (property-based)', () => {
  it('a round trip at one price leaves the balance unchanged and the account flat', () => {
    fc.assert(
      fc.property(fc.constantFrom<Side>('BUY', 'SELL'), positiveArb(100, 8), positiveArb(100_000, 8), decimalArb(1_000_000, 2), (side, q, p, bal) => {
        const open = applyTrade(account(bal.toString()), { symbol: 'X', side, quantity: q, price: p });
        const close = applyTrade(open.after, { symbol: 'X', side: side === 'BUY' ? 'SELL' : 'BUY', quantity: q, price: p });
        expect(close.after.balance.eq(bal)).toBe(true);
        expect(close.after.positions.size).toBe(0);
      }),
    );
  });

  it('balance = deposits − withdrawals + Σ realised PnL', () => {
    fc.assert(
      fc.property(decimalArb(1_000_000, 2), fc.array(fillArb, { maxLength: 30 }), (deposit, fills) => {
        let st = account(deposit.toString());
        let realised = d(0);
        for (const f of fills) {
          const r = applyTrade(st, { symbol: 'X', ...f });
          realised = realised.plus(r.realisedPnl);
          st = r.after;
        }
        expect(st.balance.eq(deposit.plus(realised))).toBe(true);
      }),
    );
  });

  it('conserves PnL: realised + unrealised equals the cash flow of the fills, up to entry rounding', () => {
    // Independent of the netting rules: Σ sells·p − Σ buys·p + q_final·m.
    fc.assert(
      fc.property(fc.array(fillArb, { minLength: 1, maxLength: 30 }), positiveArb(100_000, 2), (fills, mark) => {
        let st = account('0');
        let cashFlow = d(0);
        for (const f of fills) {
          st = applyTrade(st, { symbol: 'X', ...f }).after;
          const value = f.quantity.times(f.price);
          cashFlow = f.side === 'SELL' ? cashFlow.plus(value) : cashFlow.minus(value);
        }
        const q = st.positions.get('X')?.quantity ?? d(0);
        const m = valueAccount(st, marks({ X: mark.toString() }), rates);
        const expected = cashFlow.plus(q.times(mark));
        // Each average-entry rounding moves value by at most |q|·0.5e-18; 30 fills × 1500 units bounds it.
        expect(m.equity.minus(expected).abs().lte('1e-13')).toBe(true);
      }),
    );
  });

  it('keeps IM ≥ MM, equity = balance + Σ upnl and available = equity − IM', () => {
    const positionArb = fc.tuple(fc.boolean(), positiveArb(100, 6), positiveArb(100_000, 4));
    fc.assert(
      fc.property(
        decimalArb(1_000_000, 2),
        fc.dictionary(fc.constantFrom('A', 'B', 'C'), fc.tuple(positionArb, fc.option(positiveArb(100_000, 4), { nil: undefined }))),
        (bal, book) => {
          const positions: Record<string, Position> = {};
          const m: Record<string, string> = {};
          for (const [sym, [[short, q, e], mark]] of Object.entries(book)) {
            positions[sym] = { quantity: short ? q.neg() : q, entryPrice: e };
            if (mark) m[sym] = mark.toString();
          }
          const v = valueAccount(account(bal.toString(), positions), marks(m), rates);
          expect(v.initialMargin.gte(v.maintenanceMargin)).toBe(true);
          const sumUpnl = v.positions.reduce((acc, p) => acc.plus(p.unrealisedPnl), d(0));
          expect(v.equity.eq(bal.plus(sumUpnl))).toBe(true);
          expect(v.availableMargin.eq(v.equity.minus(v.initialMargin))).toBe(true);
          if (v.status === 'liquidatable') expect(v.equity.lt(v.maintenanceMargin)).toBe(true);
        },
      ),
    );
  });

  it('never leaves a zero-quantity position behind', () => {
    fc.assert(
      fc.property(fc.array(fillArb, { maxLength: 40 }), (fills) => {
        let st = account('0');
        for (const f of fills) st = applyTrade(st, { symbol: 'X', ...f }).after;
        for (const p of st.positions.values()) expect(p.quantity.isZero()).toBe(false);
      }),
    );
  });
});
