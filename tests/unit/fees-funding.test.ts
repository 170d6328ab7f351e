/**
 * The pure fee and funding math: worked examples and exactness properties.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { D } from '../../src/domain/decimal.js';
import { feeRate, tradeFee } from '../../src/domain/fees.js';
import { fundingDelta, fundingPayment, fundingTotals, validFundingRate } from '../../src/domain/funding.js';

const d = (s: string | number) => new D(s);
/** A decimal with up to 18 places, as the API accepts. */
const decimal = (maxInt: number, signed: boolean) =>
  fc
    .tuple(fc.integer({ min: signed ? -maxInt : 0, max: maxInt }), fc.integer({ min: 0, max: 999_999_999 }), fc.integer({ min: 0, max: 9 }))
    .map(([i, frac, shift]) => d(i).plus(d(frac).div(d(10).pow(9 + shift))));

describe('trading fees', () => {
  it('picks the maker or the taker rate', () => {
    const market = { makerFeeRate: d('-0.0001'), takerFeeRate: d('0.0005') };
    expect(feeRate(market, 'maker').toString()).toBe('-0.0001');
    expect(feeRate(market, 'taker').toString()).toBe('0.0005');
  });

  it('charges rate · quantity · price exactly', () => {
    expect(tradeFee(d('0.0005'), d('0.1'), d('50000')).toString()).toBe('2.5');
    expect(tradeFee(d('-0.0001'), d('0.1'), d('50000')).toString()).toBe('-0.5');
    expect(tradeFee(d('0.000123456789012345'), d('0.123456789012345678'), d('98765.432109876543')).toString()).toBe(
      d('0.000123456789012345').times('0.123456789012345678').times('98765.432109876543').toString(),
    );
    expect(tradeFee(d('0'), d('3'), d('7')).isZero()).toBe(true);
  });

  it('is exact: fee / (quantity · price) gives the rate back, for any 18-place inputs', () => {
    fc.assert(
      fc.property(decimal(1, true), decimal(100_000, false), decimal(1_000_000, false), (rate, q, p) => {
        fc.pre(!q.isZero() && !p.isZero());
        const fee = tradeFee(rate, q, p);
        expect(fee.div(q.times(p)).eq(rate)).toBe(true);
      }),
    );
  });
});

describe('funding payments', () => {
  it('a long pays and a short receives at a positive rate; the reverse at a negative one', () => {
    expect(fundingPayment(d('0.2'), d('50500'), d('0.0001')).toString()).toBe('1.01');
    expect(fundingDelta(d('0.2'), d('50500'), d('0.0001')).toString()).toBe('-1.01');
    expect(fundingDelta(d('-0.1'), d('50500'), d('0.0001')).toString()).toBe('0.505');
    expect(fundingDelta(d('0.2'), d('50500'), d('-0.0002')).toString()).toBe('2.02');
    expect(fundingDelta(d('-0.1'), d('50500'), d('-0.0002')).toString()).toBe('-1.01');
  });

  it('a zero rate moves nothing, as a positive zero', () => {
    const z = fundingDelta(d('-3'), d('100'), d('0'));
    expect(z.isZero() && !z.isNeg()).toBe(true);
  });

  it('totals: paid and received are the sums of the negative and positive changes, both non-negative', () => {
    expect(fundingTotals([d('-1.01'), d('0.505'), d('0.505'), d('0')])).toEqual({ accounts: 4, paid: d('1.01'), received: d('1.01') });
    fc.assert(
      fc.property(fc.array(fc.tuple(decimal(1000, true), decimal(100_000, false)), { maxLength: 50 }), decimal(0, true), (holders, rate) => {
        const deltas = holders.map(([q, m]) => fundingDelta(q, m.plus(1), rate));
        const t = fundingTotals(deltas);
        expect(t.accounts).toBe(holders.length);
        expect(t.paid.gte(0) && t.received.gte(0)).toBe(true);
        // received − paid is the exact sum of the changes
        const sum = deltas.reduce((a, b) => a.plus(b), d(0));
        expect(t.received.minus(t.paid).eq(sum)).toBe(true);
      }),
    );
  });

  it('accepts a rate only when |rate| < 1', () => {
    expect(validFundingRate(d('0.999999999999999999'))).toBe(true);
    expect(validFundingRate(d('-0.5'))).toBe(true);
    expect(validFundingRate(d('1'))).toBe(false);
    expect(validFundingRate(d('-1'))).toBe(false);
  });
});
