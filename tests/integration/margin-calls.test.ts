/**
 * Margin calls of ticks against brute force, on a real engine (Redis and
 * PostgreSQL): a random book of one-symbol and two-symbol accounts in a
 * one-tier market, another with other rates, and a tiered one; random ticks.
 * Before each tick every account's state is read and its status evaluated
 * exactly at the marks before and after; the tick must record a margin call
 * for exactly the accounts whose status got worse, with those statuses.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { D, type Dec } from '../../src/domain/decimal.js';
import { worsened } from '../../src/domain/margin-calls.js';
import { flatRules, valueAccount, type MarginRules, type RiskParams } from '../../src/domain/margin.js';
import type { MarginTier } from '../../src/domain/markets.js';
import { readAccounts } from '../../src/store/account-state.js';
import { startTestEngine, type EngineFixture } from '../helpers/engine.js';

const d = (v: string | number) => new D(v);

/** A small seeded generator, so a failure can be replayed. */
function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TIERS: Record<string, MarginTier[]> = {
  'PA-PERP': [{ maxNotional: null, initialMarginRate: d('0.2'), maintenanceMarginRate: d('0.1') }],
  'PB-PERP': [{ maxNotional: null, initialMarginRate: d('0.1'), maintenanceMarginRate: d('0.05') }],
  'PT-PERP': [
    { maxNotional: d('20000'), initialMarginRate: d('0.1'), maintenanceMarginRate: d('0.05') },
    { maxNotional: d('60000'), initialMarginRate: d('0.2'), maintenanceMarginRate: d('0.1') },
    { maxNotional: null, initialMarginRate: d('0.5'), maintenanceMarginRate: d('0.25') },
  ],
};
const SYMBOLS = Object.keys(TIERS);
const params = new Map<string, RiskParams>(SYMBOLS.map((s) => [s, flatRules({ initial: d(1), maintenance: d(1) }, { tiers: TIERS[s]! }).paramsOf(s)]));
const rules: MarginRules = { paramsOf: (s) => params.get(s)! };

let t: EngineFixture;

beforeAll(async () => {
  t = await startTestEngine();
  for (const symbol of SYMBOLS) {
    const tiers = TIERS[symbol]!.map((x) => ({
      max_notional: x.maxNotional === null ? null : x.maxNotional.toString(),
      initial_margin_rate: x.initialMarginRate.toString(),
      maintenance_margin_rate: x.maintenanceMarginRate.toString(),
    }));
    const res = await t.put(`/markets/${symbol}`, { tiers, trade_price_band: '0', max_mark_move: '0' });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  }
});

afterAll(async () => {
  await t?.close();
});

describe('margin calls of ticks, against brute force', () => {
  for (const seed of [1, 2]) {
    it(`seed ${seed}: each tick records exactly the accounts whose status got worse`, async () => {
      const random = mulberry32(seed);
      const between = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
      const marks = new Map<string, Dec>();
      // First marks: judged from the entry prices (positions opened below, after them, so no holder yet).
      for (const s of SYMBOLS) {
        marks.set(s, d(1000));
        await t.mark(s, '1000');
      }
      const accounts: number[] = [];
      for (let i = 0; i < 60; i++) {
        const a = t.freshAccount();
        accounts.push(a);
        const held = random() < 0.3 ? [SYMBOLS[i % 3]!, SYMBOLS[(i + 1) % 3]!] : [SYMBOLS[i % 3]!];
        let initial = d(0);
        const trades: [string, 'BUY' | 'SELL', string][] = [];
        for (const s of held) {
          const lots = between(1, 120); // up to 120 at 1000: beyond PT's second tier
          const side = random() < 0.5 ? 'BUY' : 'SELL';
          trades.push([s, side, String(lots)]);
          const v = valueAccount({ balance: d(0), positions: new Map([[s, { quantity: d(lots), entryPrice: d(1000) }]]) }, marks, rules);
          initial = initial.plus(v.initialMargin);
        }
        // Cash between the initial margin and 1.4 times it: healthy at the start, near the edge.
        const cash = initial.times(1 + random() * 0.4).toDecimalPlaces(2).plus(1);
        await t.deposit(a, cash.toString());
        for (const [s, side, q] of trades) {
          const res = await t.trade(a, s, side, q, '1000');
          expect(res.status, JSON.stringify(res.body)).toBe(200);
        }
      }
      let calls = 0;
      let multiCalls = 0;
      let tieredCalls = 0;
      for (let tick = 0; tick < 40; tick++) {
        const symbol = SYMBOLS[between(0, 2)]!;
        const from = marks.get(symbol)!;
        const to = from.times(1 + (random() - 0.5) * 0.12).toDecimalPlaces(2);
        const states = await readAccounts(t.db.redis, t.keys, accounts);
        const after = new Map(marks).set(symbol, to);
        const expected = states
          .filter((s) => s.positions.has(symbol))
          .flatMap((s) => {
            const before = valueAccount(s, marks, rules).status;
            const now = valueAccount(s, after, rules).status;
            return worsened(before, now) ? [[s.accountId, before, now] as const] : [];
          });
        await t.mark(symbol, to.toString());
        marks.set(symbol, to);
        const [{ version } = { version: '0' }] = await t.db.sql<{ version: string }[]>`SELECT version::text FROM mark_prices WHERE symbol = ${symbol}`;
        const recorded = await t.db.sql<{ account_id: string; previous_status: string; status: string }[]>`
          SELECT account_id::text, previous_status, status FROM margin_calls
          WHERE cause = 'tick' AND symbol = ${symbol} AND mark_version = ${version} AND account_id = ANY(${accounts}::bigint[])`;
        expect(
          recorded.map((r) => [Number(r.account_id), r.previous_status, r.status]).sort((x, y) => (x[0] as number) - (y[0] as number)),
          `tick ${tick}: ${symbol} ${from.toString()} → ${to.toString()}`,
        ).toEqual([...expected].sort((x, y) => x[0] - y[0]));
        calls += recorded.length;
        for (const [id] of expected) {
          if (states.find((s) => s.accountId === id)!.positions.size > 1) multiCalls++;
          if (symbol === 'PT-PERP') tieredCalls++;
        }
      }
      // The walk did cross thresholds, of two-symbol accounts and in the tiered market too (a run that recorded nothing would prove little).
      expect([calls > 5, multiCalls > 0, tieredCalls > 0]).toEqual([true, true, true]);
    }, 120_000);
  }
});
