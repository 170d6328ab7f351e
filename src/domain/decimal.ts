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

/** Truncating division at a working precision set per call (see divRound). */
const Truncating = Decimal.clone({ rounding: Decimal.ROUND_DOWN, toExpNeg: -9e15, toExpPos: 9e15 });
const units = new Map<number, Dec>();
const unitOf = (scale: number): Dec => {
  let u = units.get(scale);
  if (!u) units.set(scale, (u = new D(10).pow(-scale)));
  return u;
};

/**
 * a / b rounded to `scale` fractional digits, half-even, exactly.
 *
 * Dividing at high precision and then rounding could round twice; instead the
 * quotient is truncated at `scale` digits and the exact remainder decides the
 * last digit. The division runs at just the precision it needs (the quotient's
 * integer digits plus `scale`), which keeps it cheap on the trade path.
 */
export function divRound(a: Dec, b: Dec, scale = DIVISION_SCALE): Dec {
  if (b.isZero()) throw new RangeError('division by zero');
  if (a.isZero()) return new D(0);
  const unit = unitOf(scale);
  const negative = a.isNeg() !== b.isNeg();
  const absA = a.abs();
  const absB = b.abs();
  // Significant digits needed: the quotient's integer digits (from the exponents) + scale + a guard.
  Truncating.set({ precision: Math.max(1, absA.e - absB.e + 2) + scale + 2 });
  let q = new D(new Truncating(absA).div(new Truncating(absB)).toDecimalPlaces(scale, Decimal.ROUND_DOWN));
  // r = |a| − q·|b| must land in [0, unit·|b|); step q if the working precision fell short.
  const step = absB.times(unit);
  let remainder = absA.minus(q.times(absB));
  while (remainder.isNeg()) {
    q = q.minus(unit);
    remainder = remainder.plus(step);
  }
  while (remainder.gte(step)) {
    q = q.plus(unit);
    remainder = remainder.minus(step);
  }
  // Compare 2r with one unit of b: above half rounds up, exactly half rounds to even.
  const cmp = remainder.times(2).cmp(step);
  if (cmp > 0 || (cmp === 0 && !isEvenLastDigit(q, scale))) q = q.plus(unit);
  return negative ? q.neg() : q;
}

function isEvenLastDigit(q: Dec, scale: number): boolean {
  return q.times(new D(10).pow(scale)).mod(2).isZero();
}

/** Plain decimal string for the wire and the database: no exponent, no trailing zeros. */
export function str(d: Dec): string {
  return d.toString();
}
