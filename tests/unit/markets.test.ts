import { describe, expect, it } from 'vitest';
import { D } from '../../src/domain/decimal.js';
import { effectiveMarket, markMoveRefusal, priceBand, reducesWithoutFlip, tierProblem, tradeRefusal, type MarketParams } from '../../src/domain/markets.js';

const defaults: MarketParams = {
  tiers: [{ maxNotional: null, initialMarginRate: new D('0.2'), maintenanceMarginRate: new D('0.1') }],
  tradePriceBand: new D('0.05'),
  maxMarkMove: new D(0),
  liquidationMode: 'full',
  liquidationFeeRate: new D(0),
  liquidationBuffer: new D('0.02'),
  makerFeeRate: new D(0),
  takerFeeRate: new D(0),
  lotSize: null,
};
const active = effectiveMarket('BTC-PERP', 'active', {}, defaults);
const long = { quantity: new D('2'), entryPrice: new D('50000') };

describe('market parameters', () => {
  it('takes its own parameters over the defaults, and the defaults for the rest', () => {
    const m = effectiveMarket('BTC-PERP', 'halted', { tradePriceBand: new D('0.01') }, defaults);
    expect(m.status).toBe('halted');
    expect(m.tradePriceBand.toString()).toBe('0.01');
    expect(m.liquidationBuffer.toString()).toBe('0.02');
  });
});

describe('the trade price band', () => {
  // mark 50000, band 0.05: width 2500, so 47500..52500 inclusive
  it('is [m − band·m, m + band·m], exactly', () => {
    const { min, max } = priceBand(new D('50000'), new D('0.05'));
    expect([min.toString(), max.toString()]).toEqual(['47500', '52500']);
  });

  it('accepts prices on its edges and refuses one a hair outside, with the band in the details', () => {
    const mark = new D('50000');
    expect(tradeRefusal(active, undefined, 'BUY', new D(1), new D('52500'), mark)).toBeNull();
    expect(tradeRefusal(active, undefined, 'BUY', new D(1), new D('47500'), mark)).toBeNull();
    const refusal = tradeRefusal(active, undefined, 'BUY', new D(1), new D('52500.000000000000000001'), mark);
    expect(refusal?.code).toBe('PRICE_OUT_OF_BAND');
    expect(refusal?.details).toEqual({ mark_price: '50000', min_price: '47500', max_price: '52500' });
  });

  it('applies to reducing trades too (a self-priced close would mint money)', () => {
    expect(tradeRefusal(active, long, 'SELL', new D(1), new D('99999999'), new D('50000'))?.code).toBe('PRICE_OUT_OF_BAND');
  });

  it('does not exist while the market has no mark, or when the band is 0', () => {
    expect(tradeRefusal(active, undefined, 'BUY', new D(1), new D('1'), undefined)).toBeNull();
    const off = effectiveMarket('BTC-PERP', 'active', { tradePriceBand: new D(0) }, defaults);
    expect(tradeRefusal(off, undefined, 'BUY', new D(1), new D('1'), new D('50000'))).toBeNull();
  });
});

describe('market status', () => {
  const halted = effectiveMarket('BTC-PERP', 'halted', {}, defaults);
  const reduceOnly = effectiveMarket('BTC-PERP', 'reduce_only', {}, defaults);

  it('halted refuses every trade, reducing ones included, before the band', () => {
    expect(tradeRefusal(halted, long, 'SELL', new D(1), new D('50000'), new D('50000'))?.code).toBe('MARKET_HALTED');
    expect(tradeRefusal(halted, undefined, 'BUY', new D(1), new D('1'), new D('50000'))?.code).toBe('MARKET_HALTED');
  });

  it('reduce_only takes a trade that shrinks a position, up to closing it', () => {
    expect(tradeRefusal(reduceOnly, long, 'SELL', new D('0.5'), new D('50000'), new D('50000'))).toBeNull();
    expect(tradeRefusal(reduceOnly, long, 'SELL', new D('2'), new D('50000'), new D('50000'))).toBeNull();
  });

  it('reduce_only refuses opening, increasing and flipping', () => {
    expect(tradeRefusal(reduceOnly, undefined, 'BUY', new D(1), new D('50000'), new D('50000'))?.code).toBe('MARKET_REDUCE_ONLY');
    expect(tradeRefusal(reduceOnly, long, 'BUY', new D(1), new D('50000'), new D('50000'))?.code).toBe('MARKET_REDUCE_ONLY');
    expect(tradeRefusal(reduceOnly, long, 'SELL', new D('2.000000000000000001'), new D('50000'), new D('50000'))?.code).toBe('MARKET_REDUCE_ONLY');
  });

  it('tells reducing without a flip apart for shorts too', () => {
    const short = { quantity: new D('-3'), entryPrice: new D('100') };
    expect(reducesWithoutFlip(short, 'BUY', new D('3'))).toBe(true);
    expect(reducesWithoutFlip(short, 'BUY', new D('3.1'))).toBe(false);
    expect(reducesWithoutFlip(short, 'SELL', new D('1'))).toBe(false);
  });
});

describe('the mark move guard', () => {
  // last mark 100, max move 0.1: 90..110 pass
  it('passes a move within max_mark_move of the last mark and refuses one beyond it', () => {
    expect(markMoveRefusal('X', new D('100'), new D('110'), new D('0.1'), false)).toBeNull();
    expect(markMoveRefusal('X', new D('100'), new D('90'), new D('0.1'), false)).toBeNull();
    const refusal = markMoveRefusal('X', new D('100'), new D('110.01'), new D('0.1'), false);
    expect(refusal?.code).toBe('MARK_MOVE_TOO_LARGE');
    expect(refusal?.details).toEqual({ symbol: 'X', mark_price: '100', max_mark_move: '0.1', min_price: '90', max_price: '110' });
  });

  it('lets a forced mark through, and guards nothing when off or for a first mark', () => {
    expect(markMoveRefusal('X', new D('100'), new D('1000'), new D('0.1'), true)).toBeNull();
    expect(markMoveRefusal('X', new D('100'), new D('1000'), new D('0'), false)).toBeNull();
    expect(markMoveRefusal('X', null, new D('1000'), new D('0.1'), false)).toBeNull();
  });
});

describe('margin tiers', () => {
  const tier = (max: string | null, im: string, mm: string) => ({
    maxNotional: max === null ? null : new D(max),
    initialMarginRate: new D(im),
    maintenanceMarginRate: new D(mm),
  });

  it('accept an ascending list with non-decreasing rates and the last bound null', () => {
    expect(tierProblem([tier('100000', '0.02', '0.01'), tier('1000000', '0.05', '0.025'), tier(null, '0.1', '0.05')])).toBeNull();
  });

  it.each([
    [[], 'at least one'],
    [[tier('100', '0.2', '0.1')], 'last tier'],
    [[tier(null, '0.2', '0.1'), tier(null, '0.3', '0.2')], 'only the last'],
    [[tier('100', '0.2', '0.1'), tier('50', '0.3', '0.2'), tier(null, '0.4', '0.3')], 'must rise'],
    [[tier('100', '0.2', '0.1'), tier(null, '0.1', '0.05')], 'must not fall'],
    [[tier(null, '0.1', '0.2')], 'must not exceed'],
    [[tier(null, '0.1', '0')], 'greater than 0'],
  ])('refuse %j (%s)', (tiers, problem) => {
    expect(tierProblem(tiers)).toContain(problem);
  });
});
