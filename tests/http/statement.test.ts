/**
 * GET /accounts/:account_id/ledger, the account statement, through the HTTP
 * API on real Redis and PostgreSQL: every kind of row an account can have
 * (deposit, trade with its fee, funding, withdrawal, a liquidation's closing
 * trade and fee, an insurance row), what each did to the balance, filters,
 * paging, and who may read it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { D, type Dec } from '../../src/domain/decimal.js';
import { startTestEngine, type EngineFixture } from '../helpers/engine.js';

let f: EngineFixture;
/** Pays a fee at liquidation (A); goes under water and is covered by the fund (B). */
let a: number;
let b: number;

const ok = <T extends { status: number; body: any }>(res: T, status = 200) => {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  return res.body;
};
const ledger = async (id: number, query = '', key?: string | null) => ok(await f.get(`/accounts/${id}/ledger${query}`, key));
/** [kind, change, balance] of each row, newest first. */
const summary = (entries: any[]) => entries.map((e) => [e.kind, e.change, e.balance]);

beforeAll(async () => {
  f = await startTestEngine();
  // One tier of 10 % / 5 %, full liquidation with a 1 % fee, a 0.1 % taker fee.
  ok(
    await f.put('/markets/ST-PERP', {
      tiers: [{ max_notional: null, initial_margin_rate: '0.1', maintenance_margin_rate: '0.05' }],
      liquidation_fee_rate: '0.01',
      taker_fee_rate: '0.001',
    }),
  );
  await f.mark('ST-PERP', 100);
  a = f.freshAccount();
  b = f.freshAccount();
  await f.deposit(a, 200);
  await f.deposit(b, 101);
  // Fee 0.001 · 10 · 100 = 1 each.
  ok(await f.trade(a, 'ST-PERP', 'BUY', 10, 100, { client_order_id: 'a-open' }));
  ok(await f.trade(b, 'ST-PERP', 'BUY', 10, 100));
  // Longs pay 10 · 100 · 0.0005 = 0.5 each.
  ok(await f.post('/funding', { symbol: 'ST-PERP', rate: '0.0005', funding_id: 'st-1' }));
  ok(await f.post(`/accounts/${a}/withdraw`, { amount: '50' }));
  // At 90 B's equity is 99.5 − 100 < 0: liquidated, the fund covers 0.5. A (48.5 ≥ 45) is not.
  expect((await f.mark('ST-PERP', 90)).liquidated).toEqual([b]);
  // At 86 A's equity is 148.5 − 140 = 8.5 < 43: closed, fee 0.01 · 860 = 8.6 capped at the 8.5 left.
  expect((await f.mark('ST-PERP', 86)).liquidated).toEqual([a]);
});
afterAll(async () => {
  await f?.close();
});

describe('GET /accounts/:account_id/ledger', () => {
  it('lists every row newest first, each with what it did to the balance and the balance after it', async () => {
    const { entries, next_cursor } = await ledger(a);
    expect(next_cursor).toBeNull();
    expect(summary(entries)).toEqual([
      ['LIQUIDATION_FEE', '-8.5', '0'],
      ['TRADE', '-140', '8.5'],
      ['WITHDRAWAL', '-50', '148.5'],
      ['FUNDING', '-0.5', '198.5'],
      ['TRADE', '-1', '199'],
      ['DEPOSIT', '200', '200'],
    ]);
    expect(entries.map((e: any) => e.seq)).toEqual([6, 5, 4, 3, 2, 1]);
    const [fee, close, withdrawal, funding, open, deposit] = entries;
    expect(deposit).toMatchObject({ account_id: a, amount: '200', symbol: null, fee: null, liquidation_id: null });
    expect(open).toMatchObject({
      symbol: 'ST-PERP',
      side: 'BUY',
      quantity: '10',
      price: '100',
      realised_pnl: '0',
      fee: '1',
      liquidity: 'taker',
      position_quantity: '10',
      client_order_id: 'a-open',
      amount: null,
    });
    expect(funding).toMatchObject({ symbol: 'ST-PERP', amount: '-0.5', price: '100', position_quantity: '10', funding_id: 'st-1', fee: null });
    expect(withdrawal).toMatchObject({ amount: '50', symbol: null });
    const [liquidation] = ok(await f.get(`/liquidations?account_id=${a}`)).liquidations;
    expect(close).toMatchObject({ side: 'SELL', quantity: '10', price: '86', realised_pnl: '-140', fee: '0', liquidity: null, position_quantity: '0', liquidation_id: liquidation.liquidation_id });
    expect(fee).toMatchObject({ amount: '8.5', liquidation_id: liquidation.liquidation_id, symbol: null });
    // The trade ids are the ledger's entry ids.
    const trades = ok(await f.get(`/trades/${a}`)).trades;
    expect(trades.map((t: any) => t.trade_id)).toEqual([close.entry_id, open.entry_id]);
    expect(entries.every((e: any) => e.actor !== null && !Number.isNaN(Date.parse(e.created_at)))).toBe(true);
  });

  it("shows the fund's cover of a shortfall as an INSURANCE row", async () => {
    const { entries } = await ledger(b);
    expect(summary(entries)).toEqual([
      ['INSURANCE', '0.5', '0'],
      ['TRADE', '-100', '-0.5'],
      ['FUNDING', '-0.5', '99.5'],
      ['TRADE', '-1', '100'],
      ['DEPOSIT', '101', '101'],
    ]);
    const [liquidation] = ok(await f.get(`/liquidations?account_id=${b}`)).liquidations;
    expect(liquidation.shortfall).toBe('0.5');
    expect(entries[0]).toMatchObject({ amount: '0.5', liquidation_id: liquidation.liquidation_id });
  });

  it("each row's change follows from its own fields, and the changes add up to the balance", async () => {
    for (const id of [a, b]) {
      const { entries } = await ledger(id);
      for (const e of entries) {
        const expected = {
          DEPOSIT: () => new D(e.amount),
          WITHDRAWAL: () => new D(e.amount).neg(),
          FUNDING: () => new D(e.amount),
          TRADE: () => new D(e.realised_pnl).minus(e.fee),
          LIQUIDATION_FEE: () => new D(e.amount).neg(),
          INSURANCE: () => new D(e.amount),
        }[e.kind as string]!();
        expect(new D(e.change).eq(expected), `${e.kind} seq ${e.seq}: ${e.change} vs ${expected}`).toBe(true);
      }
      const total = entries.reduce((sum: Dec, e: any) => sum.plus(e.change), new D(0));
      expect(total.eq(ok(await f.get(`/positions/${id}`)).balance)).toBe(true);
    }
  });

  it('filters by kind and pages with the cursor, with the change still taken from the row before', async () => {
    expect(summary((await ledger(a, '?kinds=FUNDING,WITHDRAWAL')).entries)).toEqual([
      ['WITHDRAWAL', '-50', '148.5'],
      ['FUNDING', '-0.5', '198.5'],
    ]);
    expect(summary((await ledger(a, '?kinds=TRADE&limit=1')).entries)).toEqual([['TRADE', '-140', '8.5']]);
    const seen: any[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: any = await ledger(a, `?limit=4${cursor === null ? '' : `&cursor=${cursor}`}`);
      seen.push(...page.entries);
      cursor = page.next_cursor;
      pages += 1;
    } while (cursor !== null);
    expect(pages).toBe(2);
    expect(summary(seen)).toEqual(summary((await ledger(a)).entries));
    // A kind the account has no rows of: an empty page, not a 404.
    expect(await ledger(a, '?kinds=INSURANCE')).toEqual({ entries: [], next_cursor: null });
  });

  it('answers 404 for an unknown account and 400 for a bad query, naming the field', async () => {
    const missing = await f.get(`/accounts/${f.freshAccount()}/ledger`);
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe('ACCOUNT_NOT_FOUND');
    for (const query of ['?kinds=TRADE,FEE', '?kinds=', '?kinds=trade', '?limit=0', '?cursor=abc', '?other=1']) {
      const res = await f.get(`/accounts/${a}/ledger${query}`);
      expect(res.status, query).toBe(400);
      expect(res.body.error.code, query).toBe('VALIDATION_ERROR');
    }
  });

  it('is readable by readers and by an account key for its own accounts only', async () => {
    const created = ok(await f.post('/admin/keys', { name: 'statement-reader', role: 'account', account_ids: [a] }), 201);
    expect((await ledger(a, '', created.key)).entries).toHaveLength(6);
    const other = await f.get(`/accounts/${b}/ledger`, created.key);
    expect(other.status).toBe(403);
    const reader = ok(await f.post('/admin/keys', { name: 'statement-r', role: 'reader' }), 201);
    expect((await ledger(b, '', reader.key)).entries).toHaveLength(5);
    expect((await f.get(`/accounts/${a}/ledger`, null)).status).toBe(401);
  });
});
