/**
 * The margin report's order and its cursor.
 *
 * Rows are ordered by their key: utilisation (null, meaning equity ≤ 0 with
 * positions, first; then descending), then account id. A page's cursor is
 * the key of the last row it showed, and the next page serves every account
 * whose key comes after it. The cursor's size does not depend on the number
 * of accounts or markets: at most 99 integer digits, 18 decimals and a
 * 16-digit id, under 180 characters once encoded.
 */
import { D, type Dec } from '../domain/decimal.js';
import { EngineError } from '../domain/errors.js';
import { step } from '../store/risk-index.js';

/** Where a row stands in the report's order. */
export interface ReportKey {
  readonly utilisationPct: Dec | null;
  readonly accountId: number;
}

/** Utilisations, riskiest first: negative when `a` is the riskier (null is riskiest of all), 0 when equal. */
export function compareUtilisation(a: Dec | null, b: Dec | null): number {
  if (a === null || b === null) return a === b ? 0 : a === null ? -1 : 1;
  return b.cmp(a);
}

/** Keys in report order: negative when `a` comes first. */
export function compareKeys(a: ReportKey, b: ReportKey): number {
  return compareUtilisation(a.utilisationPct, b.utilisationPct) || a.accountId - b.accountId;
}

const badCursor = () => new EngineError('VALIDATION_ERROR', 'invalid cursor', { fields: [{ field: 'querystring.cursor', message: 'must be a cursor returned by a previous page' }] });

/** The key's text: `n` or the utilisation as a plain decimal, a colon, the account id. */
const KEY_TEXT = /^(n|(?:0|[1-9]\d{0,98})(?:\.\d{0,39}[1-9])?):([1-9]\d{0,15})$/;

export function encodeCursor(key: ReportKey): string {
  const u = key.utilisationPct === null ? 'n' : key.utilisationPct.toFixed();
  return Buffer.from(`${u}:${key.accountId}`, 'latin1').toString('base64url');
}

/** The key a cursor holds; a 400 VALIDATION_ERROR for anything encodeCursor could not have written. */
export function decodeCursor(cursor: string | null): ReportKey | null {
  if (cursor === null) return null;
  const text = Buffer.from(cursor, 'base64url').toString('latin1');
  // Only the canonical encoding: base64url decoding ignores stray characters and padding bits.
  if (Buffer.from(text, 'latin1').toString('base64url') !== cursor) throw badCursor();
  const m = KEY_TEXT.exec(text);
  if (!m) throw badCursor();
  const accountId = Number(m[2]);
  if (!Number.isSafeInteger(accountId)) throw badCursor();
  return { utilisationPct: m[1] === 'n' ? null : new D(m[1]!), accountId };
}

/** The key's utilisation is rounded to ORDER_SCALE (40) places: the exact value is below u + 10^-40. */
const ROUNDING = new D('1e-40');
const HUNDRED = new D(100);
const ONE = new D(1);
/** Units in the last place a seek bound is widened by: the index's scores are within 6 of the exact threshold. */
const SEEK_STEPS = 16;

function steps(x: number, up: boolean): number {
  let y = x;
  for (let i = 0; i < SEEK_STEPS; i++) y = step(y, up);
  return y;
}

/**
 * The lowest score (see risk-index.ts) that an account holding only `side`
 * of one symbol can have in that symbol's list when its key at `mark` comes
 * after `after`; −Infinity when the list has to be read from its start.
 *
 * At mark m with maintenance rate r, a long with threshold T has utilisation
 * 100·r·m / (m − (1−r)·T) and a short 100·r·m / ((1+r)·T − m). Utilisation
 * at most U therefore means T ≤ (m − 100·r·m/U) / (1−r) for a long (its
 * score, −T rounded down, is at least minus that bound) and
 * T ≥ (m + 100·r·m/U) / (1+r) for a short (its score, T rounded down, is at
 * least that bound). U is the cursor's utilisation plus the rounding, and
 * the bound is widened by a few units in the last place, so no account
 * after the key is left out; the ones before it that the bound lets in are
 * passed over by comparing keys exactly.
 */
export function seekScore(side: 'long' | 'short', mark: Dec, rate: Dec, after: ReportKey | null): number {
  if (after === null || after.utilisationPct === null) return -Infinity; // null utilisations come first
  if (!rate.gt(0) || rate.gte(ONE) || !mark.gt(0)) return -Infinity; // no order to seek by
  const u = after.utilisationPct.plus(ROUNDING);
  const cushion = HUNDRED.times(rate).times(mark).div(u);
  if (side === 'long') {
    const threshold = Number(mark.minus(cushion).div(ONE.minus(rate)).toString());
    return -steps(threshold, true);
  }
  const threshold = Number(mark.plus(cushion).div(ONE.plus(rate)).toString());
  return steps(threshold, false);
}
