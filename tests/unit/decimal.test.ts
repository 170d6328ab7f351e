import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { D, divRound } from '../../src/domain/decimal.js';

describe('divRound (the only rounding the engine does)', () => {
  it('rounds to 18 decimal places by default', () => {
    // 5 / 3 = 1.666… → 1.666666666666666667
    expect(divRound(new D(5), new D(3)).toString()).toBe('1.666666666666666667');
    // 2 / 3 = 0.666… → 0.666666666666666667
    expect(divRound(new D(2), new D(3)).toString()).toBe('0.666666666666666667');
    // 1 / 3 = 0.333… → 0.333333333333333333 (rounds down)
    expect(divRound(new D(1), new D(3)).toString()).toBe('0.333333333333333333');
  });

  it('rounds exact ties half to even', () => {
    expect(divRound(new D(1), new D(8), 2).toString()).toBe('0.12'); // 0.125 → 0.12
    expect(divRound(new D(3), new D(8), 2).toString()).toBe('0.38'); // 0.375 → 0.38
    expect(divRound(new D(5), new D(2), 0).toString()).toBe('2'); // 2.5 → 2
    expect(divRound(new D(7), new D(2), 0).toString()).toBe('4'); // 3.5 → 4
    expect(divRound(new D(-1), new D(8), 2).toString()).toBe('-0.12'); // -0.125 → -0.12
    expect(divRound(new D(1), new D(-8), 2).toString()).toBe('-0.12');
  });

  it('does not mistake a value just above a tie for a tie', () => {
    // 0.125000000000000000001 / 1 at 2 places is above the tie → 0.13
    expect(divRound(new D('0.125000000000000000001'), new D(1), 2).toString()).toBe('0.13');
    expect(divRound(new D('0.124999999999999999999'), new D(1), 2).toString()).toBe('0.12');
  });

  it('refuses to divide by zero', () => {
    expect(() => divRound(new D(1), new D(0))).toThrow(RangeError);
  });

  it('agrees with decimal.js half-even rounding of the exact quotient (property)', () => {
    // Dividing by a power of two or five terminates, so decimal.js's own
    // rounding of the exact quotient is a trustworthy oracle.
    fc.assert(
      fc.property(fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }), fc.integer({ min: 0, max: 40 }), fc.boolean(), (n, k, five) => {
        const a = new D(n.toString());
        const b = new D(five ? 5 : 2).pow(k);
        const exact = a.div(b); // exact: at most 40 fractional digits, far below precision
        expect(divRound(a, b, 6).toString()).toBe(exact.toDecimalPlaces(6, D.ROUND_HALF_EVEN).toString());
      }),
    );
  });
});
