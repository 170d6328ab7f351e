/**
 * The margin report's reader of one risk-index list, against real Redis:
 * chunked reads from the risky end, runs of equal scores completed and sorted
 * exactly, members that belong elsewhere passed over, and a page resuming
 * from the previous page's last row (its key) exactly where it stopped.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { D } from '../../src/domain/decimal.js';
import { flatRules, riskSummary } from '../../src/domain/margin.js';
import { IndexSource, keyOf, type IndexSourceOptions, type ReportEntry } from '../../src/services/report-sources.js';
import type { ReportKey } from '../../src/services/report-cursor.js';
import type { RedisClient } from '../../src/store/redis.js';
import { member } from '../../src/store/risk-index.js';
import { inspector, newIsolation, type Inspector } from '../helpers/engine.js';

let db: Inspector;
let prefix: string;
let redis: RedisClient;

beforeAll(() => {
  const iso = newIsolation();
  db = inspector(iso);
  redis = db.redis;
  prefix = iso.prefix;
});

afterAll(async () => {
  await db?.destroy();
});

const rates = flatRules({ initial: new D('0.2'), maintenance: new D('0.1') });

/** An account whose margin utilisation is `pct` (null: equity below zero): balance 100, one unit at 10·pct. */
function entryAt(accountId: number, pct: string | null): ReportEntry {
  const price = new D(pct ?? '1').times(10);
  const account = { accountId, seq: 1, balance: new D(pct === null ? '-1' : '100'), positions: new Map([['X', { quantity: new D(1), entryPrice: price }]]) };
  return { accountId, account, margin: riskSummary(account, new Map([['X', price]]), rates) };
}

let lists = 0;
/** A fresh sorted set of [account id, score, utilisation ('gone': no such account)]; returns its key and the valuer over it. */
async function list(rows: [number, number, string | null][]) {
  const zkey = `${prefix}:test:${++lists}`;
  await redis.zadd(zkey, ...rows.flatMap(([id, score]) => [score, member(id)]));
  const entries = new Map(rows.filter(([, , pct]) => pct !== 'gone').map(([id, , pct]) => [id, entryAt(id, pct)]));
  const asked: number[][] = [];
  const value = async (ids: number[]) => {
    asked.push(ids);
    return ids.map((id) => entries.get(id) ?? null);
  };
  return { zkey, value, asked };
}

/** Takes up to `n` entries, as a page does; returns their ids and the key of the last one (a page's cursor). */
async function takeWithKey(source: IndexSource, n = Infinity): Promise<{ ids: number[]; last: ReportKey | null }> {
  const ids: number[] = [];
  let last: ReportKey | null = null;
  while (ids.length < n) {
    if (!source.ready()) await source.fill();
    const head = source.head();
    if (!head) break;
    ids.push(head.accountId);
    last = keyOf(head);
    source.take();
  }
  return { ids, last };
}
const take = async (source: IndexSource, n = Infinity) => (await takeWithKey(source, n)).ids;

type Options = Omit<IndexSourceOptions, 'after' | 'from'> & { after?: ReportKey | null; from?: number };
const open = (zkey: string, options: Options) => new IndexSource(redis, zkey, { after: null, from: -Infinity, ...options });
const everyone = () => true;

describe('an index list read by the margin report', () => {
  it('serves riskiest first, each run of equal scores in exact utilisation order, runs completed across chunk ends', async () => {
    const { zkey, value, asked } = await list([
      [1, -30, '7'],
      [2, -30, '9'],
      [3, -30, '8'],
      [4, -20, '4'],
      [5, -20, '6'],
      [6, -20, '5'],
      [7, -20, '6.5'],
      [8, -10, '1'],
      [9, -10, '1'],
      [10, -5, '0.5'],
    ]);
    const source = open(zkey, { chunk: 4, belongs: everyone, value });
    expect(await take(source)).toEqual([2, 3, 1, 7, 5, 6, 4, 8, 9, 10]);
    // The first chunk (4 members) ends inside the run at -20: its other members are read with it.
    expect(asked[0]).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('passes over members that belong to another list or no longer exist', async () => {
    const { zkey, value } = await list([
      [1, -30, '2'],
      [2, -30, 'gone'],
      [3, -30, '3'],
      [4, -20, '1'],
      [5, -20, '0.5'],
    ]);
    const source = open(zkey, { chunk: 2, belongs: (e) => e.accountId !== 5, value });
    expect(await take(source)).toEqual([3, 1, 4]);
    expect(source.ready()).toBe(true);
    expect(source.head()).toBeUndefined();
  });

  it('resumed after the key of any row a page stopped at, continues exactly where that page stopped', async () => {
    const rows: [number, number, string | null][] = [
      [8, -40, null],
      [1, -30, '6'],
      [2, -30, '8'],
      [3, -30, 'gone'],
      [4, -30, '7'],
      [5, -20, '4'],
      [6, -20, '4.5'],
      [7, -20, '4'],
      [9, -10, '1'],
      [10, -5, '1'],
      [11, -5, '0'],
    ];
    const { zkey, value } = await list(rows);
    const belongs = (e: ReportEntry) => e.accountId !== 6;
    const score = new Map(rows.map(([id, s]) => [id, s]));
    const whole = await take(open(zkey, { chunk: 3, belongs, value }));
    expect(whole).toEqual([8, 2, 4, 1, 5, 7, 9, 10, 11]);
    for (let n = 1; n <= whole.length; n++) {
      const { ids: page, last } = await takeWithKey(open(zkey, { chunk: 3, belongs, value }), n);
      // From the start of the list, or from the score of the last row (a lower bound for what follows it here).
      const fromStart = await take(open(zkey, { after: last, chunk: 3, belongs, value }));
      const fromScore = await take(open(zkey, { after: last, from: score.get(last!.accountId)!, chunk: 3, belongs, value }));
      expect([...page, ...fromStart]).toEqual(whole);
      expect([...page, ...fromScore]).toEqual(whole);
    }
  });

  it('starts a later page at the first run scored `from` or more, reading nothing before it', async () => {
    const { zkey, value, asked } = await list([
      [1, -30, '9'],
      [2, -25, '8'],
      [3, -20, '7'],
      [4, -20, '6'],
      [5, -10, '5'],
    ]);
    const after = { utilisationPct: new D('7'), accountId: 3 };
    expect(await take(open(zkey, { after, from: -22, chunk: 2, belongs: everyone, value }))).toEqual([4, 5]);
    expect(asked.flat()).not.toContain(1);
    expect(asked.flat()).not.toContain(2);
  });

  it('serves a run longer than it sorts in set order (account id), and resumes inside it after the last row', async () => {
    const { zkey, value } = await list([
      [1, -30, '5'],
      [2, -30, '5'],
      [3, -30, '5'],
      [4, -30, '5'],
      [5, -30, '5'],
      [6, -20, '1'],
      [7, -20, '2'],
    ]);
    const options = { chunk: 2, belongs: everyone, value, runMax: 3 };
    expect(await take(open(zkey, options))).toEqual([1, 2, 3, 4, 5, 7, 6]);
    const at = (u: string, accountId: number) => ({ utilisationPct: new D(u), accountId });
    expect(await take(open(zkey, { ...options, after: at('5', 3) }))).toEqual([4, 5, 7, 6]);
    expect(await take(open(zkey, { ...options, after: at('5', 5) }))).toEqual([7, 6]);
    expect(await take(open(zkey, { ...options, after: at('5', 0) }))).toEqual([1, 2, 3, 4, 5, 7, 6]);
    // A key between the long run and what follows: the run is passed whole; one before it: the run is served whole.
    expect(await take(open(zkey, { ...options, after: at('3', 1) }))).toEqual([7, 6]);
    expect(await take(open(zkey, { ...options, after: at('6', 1) }))).toEqual([1, 2, 3, 4, 5, 7, 6]);
  });

  it('enters a long run of the same utilisation by binary search, without valuing the members before the last row', async () => {
    const N = 200;
    const { zkey, value, asked } = await list(Array.from({ length: N }, (_, i): [number, number, string] => [i + 1, 0, '0']));
    const source = open(zkey, { after: { utilisationPct: new D('0'), accountId: 150 }, chunk: 16, belongs: everyone, value, runMax: 10 });
    expect(await take(source)).toEqual(Array.from({ length: 50 }, (_, i) => i + 151));
    const valued = asked.flat();
    // The first read (16 members) tells the run's utilisation; nothing else before 151 is valued.
    expect(valued.filter((id) => id <= 150)).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
  });

  it('reads a small first chunk, then full chunks', async () => {
    const { zkey, value, asked } = await list(Array.from({ length: 100 }, (_, i): [number, number, string] => [i + 1, i, '1']));
    expect(await take(open(zkey, { chunk: 64, belongs: everyone, value }))).toHaveLength(100);
    expect(asked.map((ids) => ids.length)).toEqual([32, 64, 4]);
  });
});
