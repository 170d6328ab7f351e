import { Decimal } from 'decimal.js';

/**
 * The one Decimal constructor used for money, prices and quantities.
 *
 * Precision is far above anything the engine produces (36 fractional digits
 * from an 18dp quantity times an 18dp price, plus a 20-digit integer part), so
 * sums and products are exact; only the explicit divisions below round.
 * Exponent notation is switched off so `toString()` always prints plain decimals.
 */
export const D = Decimal.clone({
  precision: 200,
  rounding: Decimal.ROUND_HALF_EVEN,
  toExpNeg: -9e15,
  toExpPos: 9e15,
});
export type Dec = InstanceType<typeof D>;

/** Scale of every rounded quotient (average entry, utilisation). */
export const DIVISION_SCALE = 18;
/** Most fractional digits an input price, quantity or amount may carry. */
export const MAX_INPUT_DECIMALS = 18;
/** Largest magnitude accepted on input: 10^20 keeps every product well inside NUMERIC. */
export const MAX_INPUT_VALUE = new D('1e20');

export const ZERO = new D(0);
export const HUNDRED = new D(100);

/**
 * a / b rounded to `scale` fractional digits, half-even, exactly.
 *
 * Dividing at high precision and then rounding could round twice; instead the
 * quotient is truncated, and the remainder decides the last digit.
 */
export function divRound(a: Dec, b: Dec, scale = DIVISION_SCALE): Dec {
  if (b.isZero()) throw new RangeError('division by zero');
  const unit = new D(10).pow(-scale);
  // q = trunc(a / b) at `scale` digits, computed from the exact quotient's sign.
  const negative = a.isNeg() !== b.isNeg() && !a.isZero();
  const absA = a.abs();
  const absB = b.abs();
  const truncated = absA.div(absB).toDecimalPlaces(scale, Decimal.ROUND_DOWN);
  // The exact remainder, scaled back into units of `unit`: r = |a| - q*|b|.
  let remainder = absA.minus(truncated.times(absB));
  // Guard: the high-precision division may have rounded up past the true value.
  let q = truncated;
  while (remainder.isNeg()) {
    q = q.minus(unit);
    remainder = absA.minus(q.times(absB));
  }
  while (remainder.gte(absB.times(unit))) {
    q = q.plus(unit);
    remainder = absA.minus(q.times(absB));
  }
  // Compare 2r with one unit of b: above half rounds up, exactly half rounds to even.
  const twice = remainder.times(2);
  const half = absB.times(unit);
  const cmp = twice.cmp(half);
  if (cmp > 0 || (cmp === 0 && !isEvenLastDigit(q, scale))) q = q.plus(unit);
  return negative ? q.neg() : q;
}

function isEvenLastDigit(q: Dec, scale: number): boolean {
  const scaled = q.times(new D(10).pow(scale));
  return scaled.mod(2).isZero();
}

/** Plain decimal string for the wire and the database: no exponent, no trailing zeros. */
export function str(d: Dec): string {
  return d.toString();
}
