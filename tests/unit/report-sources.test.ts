/**
 * The margin report's serving order for one chunk of an index list: each run
 * of equal scores sorted exactly by utilisation, what does not belong at the
 * end of its run, a run too long to sort kept in set order.
 */
import { describe, expect, it } from 'vitest';
import { D } from '../../src/domain/decimal.js';
import { flatRules, riskSummary } from '../../src/domain/margin.js';
import { inServingOrder, riskier, type ReportEntry } from '../../src/services/report-sources.js';

const rates = flatRules({ initial: new D('0.2'), maintenance: new D('0.1') });

/** An account whose margin utilisation is `pct` (null: equity below zero): balance 100, one unit at 10·pct. */
function entryAt(accountId: number, pct: string | null): ReportEntry {
  const price = new D(pct ?? '1').times(10);
  const account = { accountId, seq: 1, balance: new D(pct === null ? '-1' : '100'), positions: new Map([['X', { quantity: new D(1), entryPrice: price }]]) };
  return { accountId, account, margin: riskSummary(account, new Map([['X', price]]), rates) };
}

const ids = (entries: (ReportEntry | null)[]) => entries.map((e) => (e === null ? null : e.accountId));

describe('entries at a given utilisation', () => {
  it('have it', () => {
    expect(entryAt(1, '7.5').margin.utilisationPct?.toString()).toBe('7.5');
    expect(entryAt(1, null).margin.utilisationPct).toBeNull();
  });
});

describe('riskier', () => {
  it('puts a null utilisation first, then higher utilisation, then the lower account id', () => {
    const sorted = [entryAt(4, '5'), entryAt(3, '9'), entryAt(2, null), entryAt(1, '5')].sort(riskier);
    expect(ids(sorted)).toEqual([2, 3, 1, 4]);
  });
});

describe('a chunk in serving order', () => {
  const chunk = (rows: [number, string, string | null][], longRun: string | null = null) => ({
    members: rows.map(([id, score]) => [String(id), score] as const),
    entries: rows.map(([id, , pct]) => (pct === 'gone' ? null : entryAt(id, pct))),
    longRun,
    last: false,
  });
  const all = () => true;

  it('sorts each run of equal scores by exact utilisation, runs staying in score order', () => {
    const c = chunk([
      [1, '-10', '1.000000000000000001'],
      [2, '-10', '1.000000000000000002'],
      [3, '-9', '3'],
      [4, '-9', null],
      [5, '-9', '4'],
    ]);
    expect(ids(inServingOrder(c, all))).toEqual([2, 1, 4, 5, 3]);
  });

  it('puts entries that do not belong, or no longer exist, at the end of their run as nulls', () => {
    const c = chunk([
      [1, '-10', '1'],
      [2, '-10', 'gone'],
      [3, '-10', '2'],
      [4, '-9', '5'],
    ]);
    expect(ids(inServingOrder(c, (e) => e.accountId !== 3))).toEqual([1, null, null, 4]);
  });

  it('keeps a run too long to sort in set order, nulls where they stand', () => {
    const c = chunk(
      [
        [1, '-10', '2'],
        [2, '-10', '1'],
        [3, '-8', '1'],
        [4, '-8', 'gone'],
        [5, '-8', '9'],
      ],
      '-8',
    );
    expect(ids(inServingOrder(c, all))).toEqual([1, 2, 3, null, 5]);
  });
});
