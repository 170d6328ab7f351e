import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { D, divRound, type Dec } from '../../src/domain/decimal.js';

/** A decimal as an exact integer and a scale: value = int / 10^scale (decimal.js prints plain digits here). */
function scaled(d: Dec): { int: bigint; scale: number } {
  const [whole, fraction = ''] = d.toString().split('.');
  return { int: BigInt(whole! + fraction), scale: fraction.length };
}

/** The decimal int / 10^scale, written out. */
function decimalOf(int: bigint, scale: number): Dec {
  const digits = (int < 0n ? -int : int).toString().padStart(scale + 1, '0');
  const text = scale === 0 ? digits : `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  return new D(int < 0n ? `-${text}` : text);
}

/** Any decimal with up to 18 fractional digits and up to 30 significant ones. */
const anyDecimal = fc
  .tuple(fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }), fc.integer({ min: 0, max: 18 }))
  .map(([int, scale]) => decimalOf(int, scale));
/** Any non-zero divisor: the ones named in the review, and arbitrary ones. */
const anyDivisor = fc.oneof(
  fc.constantFrom('3', '7', '0.0003', '-11', '-0.000000000000000007', '1e-18').map((x) => new D(x)),
  anyDecimal.filter((d) => !d.isZero()),
);

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

  it('is the nearest value at the scale, ties to even, for any non-zero divisor (property, checked exactly on integers)', () => {
    fc.assert(
      fc.property(anyDecimal, anyDivisor, fc.integer({ min: 0, max: 20 }), (a, b, scale) => {
        const q = divRound(a, b, scale);
        const { int: A, scale: sa } = scaled(a);
        const { int: B, scale: sb } = scaled(b);
        const r = scaled(q);
        expect(r.scale).toBeLessThanOrEqual(scale);
        const R = r.int * 10n ** BigInt(scale - r.scale); // q = R / 10^scale
        // a/b − q = (A·10^sb·10^scale − R·B·10^sa) / (B·10^sa·10^scale); twice its numerator against the denominator:
        const abs = (x: bigint) => (x < 0n ? -x : x);
        const twiceError = abs(2n * (A * 10n ** BigInt(sb + scale) - R * B * 10n ** BigInt(sa)));
        const unit = abs(B) * 10n ** BigInt(sa); // half a unit in the last place, times two
        expect(twiceError <= unit, `${a} / ${b} at ${scale}: ${q} is more than half a unit away`).toBe(true);
        if (twiceError === unit) expect(R % 2n, `${a} / ${b} at ${scale}: a tie must round to even`).toBe(0n);
      }),
    );
  });

  it('rounds an exact tie to the even neighbour for any non-zero divisor (property)', () => {
    // a = b · (m + ½) · 10^−scale is a finite decimal whatever b is, and a / b lies exactly between m and m + 1 units.
    fc.assert(
      fc.property(anyDivisor, fc.bigInt({ min: -(10n ** 20n), max: 10n ** 20n }), fc.integer({ min: 0, max: 18 }), (b, m, scale) => {
        const a = b.times((2n * m + 1n).toString()).div(2).div(new D(10).pow(scale)); // exact: few digits, far below precision
        const even = m % 2n === 0n ? m : m + 1n;
        expect(divRound(a, b, scale).eq(decimalOf(even, scale)), `${a} / ${b} at ${scale}`).toBe(true);
      }),
    );
  });
});
