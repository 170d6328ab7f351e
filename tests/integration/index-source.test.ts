/**
 * The margin report's reader of one risk-index list, against real Redis:
 * chunked reads from the risky end, runs of equal scores completed and sorted
 * exactly, members that belong elsewhere passed over, and a page resuming
 * from the previous page's count exactly where it stopped.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { D } from '../../src/domain/decimal.js';
import { flatRules, riskSummary } from '../../src/domain/margin.js';
import { IndexSource, type IndexSourceOptions, type ReportEntry } from '../../src/services/report-sources.js';
import { member } from '../../src/store/risk-index.js';
import { inspector, newIsolation, type Inspector } from '../helpers/engine.js';

let db: Inspector;
let prefix: string;
let redis: Redis;

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

/** Takes up to `n` entries, as a page does; returns their ids. */
async function take(source: IndexSource, n = Infinity): Promise<number[]> {
  const out: number[] = [];
  while (out.length < n) {
    if (!source.ready()) await source.fill();
    const head = source.head();
    if (!head) break;
    out.push(head.accountId);
    source.take();
  }
  return out;
}

const open = (zkey: string, options: IndexSourceOptions) => new IndexSource(redis, 't', zkey, options);
const everyone = () => true;

describe('an index list read by the margin report', () => {
  it('serves riskiest first, each run of equal scores in exact utilisation order, runs completed across chunk ends', async () => {
    const { zkey, value, asked } = await list([
      [1, -30, '1'],
      [2, -30, '3'],
      [3, -30, '2'],
      [4, -20, '4'],
      [5, -20, '6'],
      [6, -20, '5'],
      [7, -20, '7'],
      [8, -10, '1'],
      [9, -10, '1'],
      [10, -5, '0'],
    ]);
    const source = open(zkey, { start: 0, chunk: 4, belongs: everyone, value });
    expect(await take(source)).toEqual([2, 3, 1, 7, 5, 6, 4, 8, 9, 10]);
    expect(source.consumed).toBe(10);
    // The first chunk (4 members) ends inside the run at -20: its other members are read with it.
    expect(asked[0]).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('passes over members that belong to another list or no longer exist, counting them as consumed', async () => {
    const { zkey, value } = await list([
      [1, -30, '1'],
      [2, -30, 'gone'],
      [3, -30, '2'],
      [4, -20, '4'],
      [5, -20, '5'],
    ]);
    const source = open(zkey, { start: 0, chunk: 2, belongs: (e) => e.accountId !== 5, value });
    expect(await take(source)).toEqual([3, 1, 4]);
    expect(source.ready()).toBe(true);
    expect(source.head()).toBeUndefined();
    expect(source.consumed).toBe(5);
  });

  it('resumed from any count a page stopped at, continues exactly where that page stopped', async () => {
    const rows: [number, number, string | null][] = [
      [1, -30, '1'],
      [2, -30, '3'],
      [3, -30, 'gone'],
      [4, -30, '2'],
      [5, -20, '4'],
      [6, -20, '6'],
      [7, -20, '5'],
      [8, -10, null],
      [9, -10, '1'],
      [10, -5, '0'],
    ];
    const { zkey, value } = await list(rows);
    const belongs = (e: ReportEntry) => e.accountId !== 6;
    const whole = await take(open(zkey, { start: 0, chunk: 3, belongs, value }));
    expect(whole).toEqual([2, 4, 1, 7, 5, 8, 9, 10]);
    for (let n = 0; n <= whole.length; n++) {
      const first = open(zkey, { start: 0, chunk: 3, belongs, value });
      const page = await take(first, n);
      const rest = await take(open(zkey, { start: first.consumed, chunk: 3, belongs, value }));
      expect([...page, ...rest]).toEqual(whole);
    }
  });

  it('serves a run longer than it sorts in set order (account id), and resumes inside it', async () => {
    const { zkey, value } = await list([
      [1, -30, '1'],
      [2, -30, '9'],
      [3, -30, '5'],
      [4, -30, '7'],
      [5, -30, '2'],
      [6, -20, '1'],
      [7, -20, '8'],
    ]);
    const options = { chunk: 2, belongs: everyone, value, runMax: 3 };
    expect(await take(open(zkey, { start: 0, ...options }))).toEqual([1, 2, 3, 4, 5, 7, 6]);
    expect(await take(open(zkey, { start: 3, ...options }))).toEqual([4, 5, 7, 6]);
  });

  it('reads a small first chunk, then full chunks', async () => {
    const { zkey, value, asked } = await list(Array.from({ length: 100 }, (_, i): [number, number, string] => [i + 1, i, '1']));
    expect(await take(open(zkey, { start: 0, chunk: 64, belongs: everyone, value }))).toHaveLength(100);
    expect(asked.map((ids) => ids.length)).toEqual([32, 64, 4]);
  });
});
