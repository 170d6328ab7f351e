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
/** Scale of every rounded quotient (average entry, utilisation). */
export const DIVISION_SCALE = 18;
/** Most fractional digits an input price, quantity or amount may carry. */
export const MAX_INPUT_DECIMALS = 18;
/** Largest magnitude accepted on input: 10^20 keeps every product well inside NUMERIC. */
export const MAX_INPUT_VALUE = new D('1e20');
export const ZERO = new D(0);
export const HUNDRED = new D(100);
const powersOfTen = [];
const pow10 = (k) => (powersOfTen[k] ??= 10n ** BigInt(k));
/** A decimal as an integer and a scale: value = int / 10^scale. */
function toScaledInt(d) {
    const text = d.toString(); // plain digits: exponent notation is off
    const dot = text.indexOf('.');
    if (dot < 0)
        return [BigInt(text), 0];
    return [BigInt(text.slice(0, dot) + text.slice(dot + 1)), text.length - dot - 1];
}
/**
 * a / b rounded to `scale` fractional digits, half-even, exactly.
 *
 * Computed on integers: with a = A/10^sa and b = B/10^sb, the result times
 * 10^scale is A·10^(sb+scale) / (B·10^sa); the integer quotient is then
 * rounded by its remainder. One rounding, no binary floating point, and
 * about ten times cheaper than a high-precision Decimal division.
 */
export function divRound(a, b, scale = DIVISION_SCALE) {
    if (b.isZero())
        throw new RangeError('division by zero');
    const [intA, scaleA] = toScaledInt(a);
    const [intB, scaleB] = toScaledInt(b);
    let numerator = intA * pow10(scaleB + scale);
    let denominator = intB * pow10(scaleA);
    if (denominator < 0n) {
        numerator = -numerator;
        denominator = -denominator;
    }
    const negative = numerator < 0n;
    if (negative)
        numerator = -numerator;
    let quotient = numerator / denominator;
    const twice = (numerator % denominator) * 2n;
    // Above half rounds up; exactly half rounds to the even neighbour.
    if (twice > denominator || (twice === denominator && (quotient & 1n) === 1n))
        quotient += 1n;
    const digits = quotient.toString().padStart(scale + 1, '0');
    const text = scale === 0 ? digits : `${digits.slice(0, digits.length - scale)}.${digits.slice(digits.length - scale)}`;
    return new D(negative && quotient !== 0n ? `-${text}` : text);
}
/** Plain decimal string for the wire and the database: no exponent, no trailing zeros. */
export function str(d) {
    return d.toString();
}
//# sourceMappingURL=decimal.js.map