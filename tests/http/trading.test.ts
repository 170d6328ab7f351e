import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { D } from '../../src/domain/decimal.js';
import { listMarkets, startTestEngine, type EngineFixture } from '../helpers/engine.js';

let f: EngineFixture;
/** Account 1 is the classic example's; the other tests take fresh ones from 100. */
const freshAccount = () => f.freshAccount();

beforeAll(async () => {
  f = await startTestEngine({ firstAccount: 100 });
  // Markets traded before any mark is posted on them (a mark lists the rest).
  await listMarkets(f.app, 'BTC-PERP', 'ETH-PERP', 'DOGE-PERP', 'NEW-PERP');
});
afterAll(async () => {
  await f?.close();
});

const post = (url: string, body: unknown) => f.post(url, body);
const get = (url: string) => f.get(url);
const deposit = (id: number, amount: string | number) => f.deposit(id, amount);
const trade: EngineFixture['trade'] = (...args) => f.trade(...args);
const mark = (symbol: string, price: string | number) => f.mark(symbol, price);
const ledgerRows = async (id: number) =>
  (await f.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ledger WHERE account_id = ${id}`)[0]!.n;

describe('POST /accounts/:id/deposit', () => {
  it('creates the account and adds to its balance', async () => {
    const id = freshAccount();
    expect(await get(`/positions/${id}`)).toMatchObject({ status: 404 });
    // deposit() expects the 200 itself.
    expect(await deposit(id, 1000)).toEqual({ account_id: id, balance: '1000' });
    expect(await deposit(id, '0.5')).toEqual({ account_id: id, balance: '1000.5' });
    const [row] = await f.db.sql`SELECT kind, amount, balance FROM cash_movements WHERE account_id = ${id} ORDER BY seq DESC LIMIT 1`;
    expect(row).toEqual({ kind: 'DEPOSIT', amount: '0.5', balance: '1000.5' });
  });
});

describe('POST /trade', () => {
  it('books the classic example exactly as written once the account is funded', async () => {
    await deposit(1, 10000);
    const res = await post('/trade', { account_id: 1, symbol: 'BTC-PERP', side: 'BUY', quantity: 0.1, price: 50000 });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      success: true,
      trade_id: expect.any(Number),
      account_id: 1,
      symbol: 'BTC-PERP',
      side: 'BUY',
      quantity: '0.1',
      price: '50000',
      realised_pnl: '0',
      fee: '0',
      liquidity: 'taker',
      position: { symbol: 'BTC-PERP', quantity: '0.1', entry_price: '50000' },
      balance: '10000',
      equity: '10000',
    });
    // A 200 means the row is committed in PostgreSQL.
    const [row] = await f.db.sql`SELECT trade_id, quantity, price, position_quantity FROM trades WHERE trade_id = ${res.body.trade_id}`;
    expect(row).toMatchObject({ quantity: '0.1', price: '50000', position_quantity: '0.1' });
  });

  it('nets, averages, realises and flips through a sequence of trades', async () => {
    const id = freshAccount();
    await deposit(id, 100000);
    await trade(id, 'ETH-PERP', 'BUY', 1, 3000);
    // increase: e = (1·3000 + 1·3100) / 2 = 3050
    expect((await trade(id, 'ETH-PERP', 'BUY', 1, 3100)).body.position).toEqual({ symbol: 'ETH-PERP', quantity: '2', entry_price: '3050' });
    // reduce 0.5 at 3250: pnl = 0.5·(3250−3050) = 100
    const reduce = await trade(id, 'ETH-PERP', 'SELL', '0.5', 3250);
    expect(reduce.body).toMatchObject({ realised_pnl: '100', balance: '100100', position: { quantity: '1.5', entry_price: '3050' } });
    // flip: sell 2.5 at 3000 closes 1.5 (pnl 1.5·(3000−3050) = −75), opens −1 at 3000
    const flip = await trade(id, 'ETH-PERP', 'SELL', '2.5', 3000);
    expect(flip.body).toMatchObject({ realised_pnl: '-75', balance: '100025', position: { quantity: '-1', entry_price: '3000' } });
    // close the short at 2900: pnl = 1·(−1)·(2900−3000) = 100
    const close = await trade(id, 'ETH-PERP', 'BUY', 1, 2900);
    expect(close.body).toMatchObject({ realised_pnl: '100', balance: '100125', position: { quantity: '0', entry_price: null } });
    expect((await get(`/positions/${id}`)).body.positions).toEqual([]);
  });

  it('rejects a trade that breaches initial margin with 422 and changes nothing', async () => {
    const id = freshAccount();
    await deposit(id, 1000);
    await mark('SOL-PERP', 100);
    const before = await get(`/positions/${id}`);
    const rowsBefore = await ledgerRows(id);
    // 50.01 SOL at 100: notional 5001 → IM 1000.2 > equity 1000
    const res = await trade(id, 'SOL-PERP', 'BUY', '50.01', 100);
    expect(res.status).toBe(422);
    expect(res.body).toEqual({
      success: false,
      error: { code: 'INSUFFICIENT_MARGIN', message: expect.any(String), details: { required: '1000.2', available: '1000' } },
    });
    expect(await get(`/positions/${id}`)).toEqual(before);
    expect(await ledgerRows(id)).toBe(rowsBefore);
    // exactly at the limit is accepted: 50 SOL → IM 1000 = equity
    expect((await trade(id, 'SOL-PERP', 'BUY', 50, 100)).status).toBe(200);
  });

  it('always accepts a reduce-only trade, even on an account under water', async () => {
    const id = freshAccount();
    await deposit(id, 1000);
    await mark('AVAX-PERP', 10);
    expect((await trade(id, 'AVAX-PERP', 'BUY', 500, 10)).status).toBe(200); // IM 1000 = equity
    await mark('AVAX-PERP', 9); // equity 500 < IM 900
    expect((await trade(id, 'AVAX-PERP', 'BUY', 1, 9)).status).toBe(422); // increasing: refused
    const reduce = await trade(id, 'AVAX-PERP', 'SELL', 100, 9); // reducing: accepted, pnl = 100·(9−10) = −100
    expect(reduce.status).toBe(200);
    expect(reduce.body).toMatchObject({ realised_pnl: '-100', balance: '900', position: { quantity: '400' } });
    await mark('AVAX-PERP', 10);
  });

  it('opens a short by selling with no position', async () => {
    const id = freshAccount();
    await deposit(id, 1000);
    const res = await trade(id, 'DOGE-PERP', 'SELL', 1000, '0.25');
    expect(res.body.position).toEqual({ symbol: 'DOGE-PERP', quantity: '-1000', entry_price: '0.25' });
  });
});

describe('client_order_id idempotency', () => {
  it('returns the first result for a repeat and books nothing new', async () => {
    const id = freshAccount();
    await deposit(id, 10000);
    const first = await trade(id, 'BTC-PERP', 'BUY', '0.01', 50000, { client_order_id: 'abc-1' });
    expect(first.status).toBe(200);
    const rows = await ledgerRows(id);
    // the same parameters, spelt differently (number vs string, trailing zero), are the same order
    const again = await trade(id, 'BTC-PERP', 'BUY', 0.01, '50000.0', { client_order_id: 'abc-1' });
    expect(again).toEqual(first);
    expect(await ledgerRows(id)).toBe(rows);
  });

  it('answers 409 when the id is reused with different parameters', async () => {
    const id = freshAccount();
    await deposit(id, 10000);
    await trade(id, 'BTC-PERP', 'BUY', '0.01', 50000, { client_order_id: 'x' });
    const clash = await trade(id, 'BTC-PERP', 'BUY', '0.02', 50000, { client_order_id: 'x' });
    expect(clash.status).toBe(409);
    expect(clash.body.error.code).toBe('IDEMPOTENCY_CONFLICT');
  });

  it('is per account: another account may use the same id', async () => {
    const a = freshAccount();
    const b = freshAccount();
    await deposit(a, 10000);
    await deposit(b, 10000);
    const ra = await trade(a, 'BTC-PERP', 'BUY', '0.01', 50000, { client_order_id: 'same' });
    const rb = await trade(b, 'BTC-PERP', 'BUY', '0.01', 50000, { client_order_id: 'same' });
    expect(rb.status).toBe(200);
    expect(rb.body.trade_id).not.toBe(ra.body.trade_id);
  });

  it('does not remember a rejected attempt', async () => {
    const id = freshAccount();
    await deposit(id, 10);
    expect((await trade(id, 'BTC-PERP', 'BUY', 1, 50000, { client_order_id: 'retry-me' })).status).toBe(422);
    await deposit(id, 20000);
    const booked = await trade(id, 'BTC-PERP', 'BUY', 1, 50000, { client_order_id: 'retry-me' });
    expect(booked.status).toBe(200);
  });
});

describe('POST /accounts/:id/withdraw', () => {
  it('pays out free cash and refuses more than margin allows', async () => {
    const id = freshAccount();
    await deposit(id, 2000);
    await mark('ADA-PERP', 1);
    await trade(id, 'ADA-PERP', 'BUY', 5000, 1); // IM 1000 → 1000 free
    expect(await post(`/accounts/${id}/withdraw`, { amount: 400 })).toEqual({ status: 200, body: { account_id: id, balance: '1600' } });
    const refused = await post(`/accounts/${id}/withdraw`, { amount: '600.01' });
    expect(refused.status).toBe(422);
    expect(refused.body.error).toMatchObject({ code: 'INSUFFICIENT_MARGIN', details: { required: '600.01', available: '600' } });
    expect((await get(`/positions/${id}`)).body.balance).toBe('1600');
  });

  it('never pays out more than the cash balance', async () => {
    const id = freshAccount();
    await deposit(id, 100);
    const res = await post(`/accounts/${id}/withdraw`, { amount: '100.000000000000000001' });
    expect(res.status).toBe(422);
    expect(res.body.error.details).toEqual({ required: '100.000000000000000001', available: '100' });
  });
});

describe('GET /positions/:id', () => {
  it('reports margin at current marks, unmarked symbols at entry', async () => {
    const id = freshAccount();
    await deposit(id, 10000);
    await trade(id, 'BTC-PERP', 'BUY', '0.1', 50000);
    await trade(id, 'NEW-PERP', 'SELL', 10, 20); // no mark yet
    await mark('BTC-PERP', 51000);
    const res = await get(`/positions/${id}`);
    // BTC upnl 0.1·1000 = 100, notional 5100; NEW valued at entry: notional 200, upnl 0.
    // Liquidation prices, the other mark held: NEW's where 10000 + 100 − 510 − 10·(m − 20) = 0.1·10·m,
    // i.e. 9790 = 11·m, m = 890; BTC's would be below zero (its long is covered many times): null.
    // equity 10100, notional 5300, IM 1060, MM 530, available 9040, util 530/10100·100
    expect(res.body).toEqual({
      account_id: id,
      balance: '10000',
      equity: '10100',
      unrealised_pnl: '100',
      notional: '5300',
      initial_margin: '1060',
      maintenance_margin: '530',
      available_margin: '9040',
      margin_utilisation_pct: new D(530).times(100).div(10100).toDecimalPlaces(18, D.ROUND_HALF_EVEN).toString(),
      status: 'healthy',
      positions: [
        {
          symbol: 'BTC-PERP',
          quantity: '0.1',
          entry_price: '50000',
          mark_price: '51000',
          notional: '5100',
          unrealised_pnl: '100',
          tier: 1,
          initial_margin: '1020',
          maintenance_margin: '510',
          liquidation_price: null,
        },
        {
          symbol: 'NEW-PERP',
          quantity: '-10',
          entry_price: '20',
          mark_price: null,
          notional: '200',
          unrealised_pnl: '0',
          tier: 1,
          initial_margin: '40',
          maintenance_margin: '20',
          liquidation_price: '890',
        },
      ],
    });
  });
});

describe('GET /trades/:id', () => {
  it('pages newest first with a cursor, null on the last page', async () => {
    const id = freshAccount();
    await deposit(id, 100000);
    const ids: number[] = [];
    for (let i = 1; i <= 5; i++) ids.push((await trade(id, 'BTC-PERP', i % 2 ? 'BUY' : 'SELL', '0.01', 50000 + i)).body.trade_id);
    const p1 = await get(`/trades/${id}?limit=2`);
    expect(p1.body.trades.map((x: { trade_id: number }) => x.trade_id)).toEqual([ids[4], ids[3]]);
    const p2 = await get(`/trades/${id}?limit=2&cursor=${p1.body.next_cursor}`);
    expect(p2.body.trades.map((x: { trade_id: number }) => x.trade_id)).toEqual([ids[2], ids[1]]);
    const p3 = await get(`/trades/${id}?limit=2&cursor=${p2.body.next_cursor}`);
    expect(p3.body.trades.map((x: { trade_id: number }) => x.trade_id)).toEqual([ids[0]]);
    expect(p3.body.next_cursor).toBeNull();
    expect(p1.body.trades[0]).toEqual({
      trade_id: ids[4],
      account_id: id,
      symbol: 'BTC-PERP',
      side: 'BUY',
      quantity: '0.01',
      price: '50005',
      realised_pnl: '0',
      fee: '0',
      liquidity: 'taker',
      liquidation_id: null,
      client_order_id: null,
      actor: 'admin-env',
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });
  });

  it('is empty, not 404, for a funded account that never traded', async () => {
    const id = freshAccount();
    await deposit(id, 1);
    expect(await get(`/trades/${id}`)).toEqual({ status: 200, body: { trades: [], next_cursor: null } });
  });
});

describe('ledger and Redis agree', () => {
  it("keeps Redis equal to what the ledger's last rows imply", async () => {
    const id = freshAccount();
    await deposit(id, 5000);
    await trade(id, 'BTC-PERP', 'BUY', '0.03', 50000);
    await trade(id, 'ETH-PERP', 'SELL', '1', 3000);
    await trade(id, 'BTC-PERP', 'SELL', '0.01', 50500);
    await post(`/accounts/${id}/withdraw`, { amount: 1 });
    const [last] = await f.db.sql`SELECT balance, seq FROM ledger WHERE account_id = ${id} ORDER BY seq DESC LIMIT 1`;
    const positions = await f.db.sql`
      SELECT DISTINCT ON (symbol) symbol, position_quantity, position_entry_price FROM trades
      WHERE account_id = ${id} ORDER BY symbol, seq DESC`;
    const view = (await get(`/positions/${id}`)).body;
    expect(view.balance).toBe(last!.balance);
    expect(view.positions.map((p: { symbol: string; quantity: string; entry_price: string }) => [p.symbol, p.quantity, p.entry_price])).toEqual(
      positions.filter((p) => p.position_quantity !== '0').map((p) => [p.symbol, p.position_quantity, p.position_entry_price]),
    );
  });

  it('catches Redis up when the ledger holds a row Redis never saw (a writer died between the two)', async () => {
    const id = freshAccount();
    await deposit(id, 1000);
    // A row committed by a writer that crashed before touching Redis.
    await f.db.sql`INSERT INTO ledger (account_id, seq, kind, amount, balance) VALUES (${id}, 2, 'DEPOSIT', 500, 1500)`;
    expect(await deposit(id, 1)).toEqual({ account_id: id, balance: '1501' });
    const seqs = await f.db.sql`SELECT seq, balance FROM ledger WHERE account_id = ${id} ORDER BY seq`;
    expect(seqs).toEqual([
      { seq: '1', balance: '1000' },
      { seq: '2', balance: '1500' },
      { seq: '3', balance: '1501' },
    ]);
  });
});
