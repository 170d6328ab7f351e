/**
 * The margin report's cursor (the key of a page's last row) and the score a
 * later page seeks each threshold list to: pure functions, checked against
 * the engine's own valuation and index scores.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { D } from '../../src/domain/decimal.js';
import { liquidationThresholds } from '../../src/domain/liquidation.js';
import { flatRules, riskSummary } from '../../src/domain/margin.js';
import { compareKeys, decodeCursor, encodeCursor, seekScore, type ReportKey } from '../../src/services/report-cursor.js';
import { scoreOf } from '../../src/store/risk-index.js';

const key = (u: string | null, accountId: number): ReportKey => ({ utilisationPct: u === null ? null : new D(u), accountId });
const text = (k: ReportKey | null) => (k === null ? null : `${k.utilisationPct?.toFixed() ?? 'null'}/${k.accountId}`);

describe('the report cursor', () => {
  it('round-trips a key: a utilisation of any size and scale, or null, and an account id', () => {
    for (const k of [key('0', 1), key('60', 2), key('25.714285714285714286', 3), key('0.000000000000000001', 4), key(null, 5), key('500000', 2 ** 53 - 1)]) {
      const cursor = encodeCursor(k);
      expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(text(decodeCursor(cursor))).toBe(text(k));
    }
    expect(decodeCursor(null)).toBeNull();
  });

  it('stays within the 256 characters the query allows for the largest utilisation the input limits allow', () => {
    // 99 integer digits and 40 decimals (the order's places), more than an amount below 10^20 with 18 places can produce
    const largest = key(`${'9'.repeat(99)}.${'9'.repeat(40)}`, 2 ** 53 - 1);
    expect(encodeCursor(largest).length).toBeLessThanOrEqual(256);
    expect(text(decodeCursor(encodeCursor(largest)))).toBe(text(largest));
  });

  it('refuses, with a 400 VALIDATION_ERROR, anything it could not have written', () => {
    const b64 = (s: string) => Buffer.from(s, 'latin1').toString('base64url');
    const forged = [
      'not-a-cursor',
      b64(JSON.stringify({ 'l:AAA-PERP': 3, f: 1 })), // the earlier per-list form
      b64('60:0'), // account id 0
      b64('60:01'), // leading zero
      b64('060:1'),
      b64('60.50:1'), // trailing zero
      b64('60.:1'),
      b64('-1:1'), // negative
      b64('1e3:1'), // exponent
      b64(`0.${'0'.repeat(40)}1:1`), // 41 places
      b64('null:1'),
      b64('n:1:2'),
      b64('60:9007199254740993'), // above 2^53 − 1
      b64('60:1') + 'A', // not the canonical encoding
      '',
    ];
    for (const cursor of forged) {
      expect(() => decodeCursor(cursor), cursor).toThrow(expect.objectContaining({ code: 'VALIDATION_ERROR' }));
    }
  });

  it('orders keys riskiest first: null, then utilisation descending, then account id', () => {
    const sorted = [key('5', 1), key(null, 9), key('5', 0), key('50', 7), key(null, 2), key('0', 3)].sort(compareKeys);
    expect(sorted.map(text)).toEqual(['null/2', 'null/9', '50/7', '5/0', '5/1', '0/3']);
  });
});

describe('the score a later page seeks a threshold list to', () => {
  const rates = flatRules({ initial: new D('0.2'), maintenance: new D('0.1') });
  const maintenance = new D('0.1');
  const cents = (lo: number, hi: number) => fc.integer({ min: lo, max: hi }).map((n) => new D(n).div(100));
  /** One account holding one position: its key at the mark, and the score the index gives it. */
  const account = fc.record({ long: fc.boolean(), quantity: cents(1, 100_000), entry: cents(100, 10_000_000), cushion: cents(1, 100_000_000), id: fc.integer({ min: 1, max: 1000 }) });
  const build = (a: { long: boolean; quantity: InstanceType<typeof D>; entry: InstanceType<typeof D>; cushion: InstanceType<typeof D>; id: number }, mark: InstanceType<typeof D>) => {
    const state = { accountId: a.id, seq: 1, balance: a.cushion, positions: new Map([['X', { quantity: a.long ? a.quantity : a.quantity.neg(), entryPrice: a.entry }]]) };
    const marks = new Map([['X', mark]]);
    const summary = riskSummary(state, marks, rates);
    const score = scoreOf(liquidationThresholds(state, marks, rates).get('X')!);
    return { key: { utilisationPct: summary.orderPct, accountId: a.id }, score };
  };

  it('never lies above the score of an account that comes after the key (same side, same mark)', () => {
    fc.assert(
      fc.property(account, account, cents(100, 10_000_000), (a, b, mark) => {
        fc.pre(a.long === b.long);
        const x = build(a, mark);
        const y = build(b, mark);
        // y after x in the report: y's score must not be below the seek from x's key
        const [first, later] = compareKeys(x.key, y.key) < 0 ? [x, y] : [y, x];
        expect(later.score).toBeGreaterThanOrEqual(seekScore(a.long ? 'long' : 'short', mark, maintenance, first.key));
      }),
      { numRuns: 2000 },
    );
  });

  it('lies just below the score of the key\'s own account', () => {
    fc.assert(
      fc.property(account, cents(100, 10_000_000), (a, mark) => {
        const x = build(a, mark);
        fc.pre(x.key.utilisationPct !== null && x.key.utilisationPct.gt('0.001'));
        const seek = seekScore(a.long ? 'long' : 'short', mark, maintenance, x.key);
        expect(seek).toBeLessThanOrEqual(x.score);
        expect(x.score - seek).toBeLessThanOrEqual(Number(mark.toString()) * 1e-9);
      }),
      { numRuns: 2000 },
    );
  });

  it('reads from the start after a null utilisation, and when the maintenance rate gives no order', () => {
    expect(seekScore('long', new D(100), new D('0.1'), key(null, 3))).toBe(-Infinity);
    expect(seekScore('short', new D(100), new D('0'), key('5', 3))).toBe(-Infinity);
    expect(seekScore('long', new D(100), new D('1'), key('5', 3))).toBe(-Infinity);
    expect(seekScore('long', new D(100), new D('0.1'), null)).toBe(-Infinity);
  });
});
