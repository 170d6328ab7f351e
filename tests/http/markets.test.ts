/**
 * The market registry and its guards, as a client drives them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { D } from '../../src/domain/decimal.js';
import { MarkBook } from '../../src/store/mark-book.js';
import { publishMarket } from '../../src/store/markets.js';
import { defaultMarketParams } from '../../src/config.js';
import { call, listMarkets, startTestEngine, type EngineFixture, type Side } from '../helpers/engine.js';

let te: EngineFixture;

beforeAll(async () => {
  te = await startTestEngine({ env: { MARK_MAX_MOVE: '0.5' } });
});

afterAll(async () => {
  await te?.close();
});

const api = (method: 'GET' | 'POST' | 'PUT', url: string, body?: unknown) => call(te.app, method, url, body);

async function fundedAccount(amount = '100000'): Promise<number> {
  const id = te.freshAccount();
  await te.deposit(id, amount);
  return id;
}

const trade = (account_id: number, symbol: string, side: Side, quantity: string, price: string, extra: object = {}) =>
  te.trade(account_id, symbol, side, quantity, price, extra);

describe('PUT /markets/:symbol', () => {
  it('lists a market with the engine defaults and shows it in GET /markets and GET /markets/:symbol', async () => {
    const res = await api('PUT', '/markets/ALPHA-PERP', {});
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      symbol: 'ALPHA-PERP',
      status: 'active',
      tiers: [{ max_notional: null, initial_margin_rate: '0.2', maintenance_margin_rate: '0.1' }],
      trade_price_band: '0.05',
      max_mark_move: '0.5',
      liquidation_mode: 'full',
      liquidation_fee_rate: '0',
      liquidation_buffer: '0.02',
      maker_fee_rate: '0',
      taker_fee_rate: '0',
      lot_size: null,
      mark_price: null,
      open_interest: { long: '0', short: '0' },
      holders: 0,
      fees_collected: '0',
    });
    const list = await api('GET', '/markets');
    expect(list.body.markets.map((m: { symbol: string }) => m.symbol)).toContain('ALPHA-PERP');
    expect((await api('GET', '/markets/ALPHA-PERP')).body).toEqual(res.body);
  });

  it('stores parameters that later features use, and changes only the ones sent', async () => {
    const tiers = [
      { max_notional: '100000', initial_margin_rate: '0.02', maintenance_margin_rate: '0.01' },
      { max_notional: null, initial_margin_rate: '0.05', maintenance_margin_rate: '0.025' },
    ];
    const put = await api('PUT', '/markets/BETA-PERP', { tiers, liquidation_mode: 'partial', lot_size: '0.001', maker_fee_rate: '-0.0001', taker_fee_rate: 0.0005 });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ tiers, liquidation_mode: 'partial', lot_size: '0.001', maker_fee_rate: '-0.0001', taker_fee_rate: '0.0005' });
    const again = await api('PUT', '/markets/BETA-PERP', { trade_price_band: '0.01' });
    expect(again.body).toMatchObject({ tiers, liquidation_mode: 'partial', trade_price_band: '0.01' });
  });

  it('refuses unknown fields, bad tiers and a rebate above the taker fee, changing nothing', async () => {
    await api('PUT', '/markets/GAMMA-PERP', {});
    const before = (await api('GET', '/markets/GAMMA-PERP')).body;
    const unknown = await api('PUT', '/markets/GAMMA-PERP', { status: 'halted', leverage: 100 });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.details.fields).toContainEqual({ field: 'body.leverage', message: 'is not a known field' });
    const badTiers = await api('PUT', '/markets/GAMMA-PERP', { tiers: [{ max_notional: '100', initial_margin_rate: '0.1', maintenance_margin_rate: '0.2' }] });
    expect(badTiers.status).toBe(400);
    const rebate = await api('PUT', '/markets/GAMMA-PERP', { maker_fee_rate: '-0.001', taker_fee_rate: '0.0005' });
    expect(rebate.status).toBe(400);
    expect(rebate.body.error.code).toBe('VALIDATION_ERROR');
    const outOfRange = await api('PUT', '/markets/GAMMA-PERP', { trade_price_band: '1.5' });
    expect(outOfRange.status).toBe(400);
    const after = (await api('GET', '/markets/GAMMA-PERP')).body;
    expect(after).toEqual(before);
    const history = (await api('GET', '/markets/GAMMA-PERP/history')).body.events;
    expect(history.map((e: { type: string }) => e.type)).toEqual(['listed']);
  });

  it('answers 404 MARKET_NOT_FOUND for a market never listed', async () => {
    const res = await api('GET', '/markets/NEVER-PERP');
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('MARKET_NOT_FOUND');
    expect((await api('GET', '/markets/NEVER-PERP/history')).status).toBe(404);
  });
});

describe('listing by the first mark', () => {
  it("lists an unknown symbol on an operator's first mark, with the defaults, and records both in its history", async () => {
    const res = await api('POST', '/mark-price', { symbol: 'FRESH-PERP', price: '12.5' });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ symbol: 'FRESH-PERP', price: '12.5', liquidated: [], sweep: 'complete' });
    const market = (await api('GET', '/markets/FRESH-PERP')).body;
    expect(market).toMatchObject({ symbol: 'FRESH-PERP', status: 'active', mark_price: '12.5', trade_price_band: '0.05' });
    const events = (await api('GET', '/markets/FRESH-PERP/history')).body.events;
    expect(events.map((e: { type: string }) => e.type)).toEqual(['mark', 'listed']);
    expect(events[0]).toMatchObject({ type: 'mark', price: '12.5', previous_price: null, forced: false, actor: 'admin-env' });
  });
});

describe('POST /trade on the registry', () => {
  it('is 404 MARKET_NOT_FOUND on a symbol that is not listed, and books nothing', async () => {
    const id = await fundedAccount();
    const res = await trade(id, 'UNLISTED-PERP', 'BUY', '1', '100');
    expect(res.status).toBe(404);
    expect(res.body.error).toMatchObject({ code: 'MARKET_NOT_FOUND', details: { symbol: 'UNLISTED-PERP' } });
    expect((await api('GET', `/trades/${id}`)).body.trades).toEqual([]);
  });

  it('shows open interest and holders from the positions', async () => {
    await listMarkets(te.app, 'OI-PERP');
    const [a, b, c] = [await fundedAccount(), await fundedAccount(), await fundedAccount()];
    await trade(a, 'OI-PERP', 'BUY', '1.5', '100');
    await trade(b, 'OI-PERP', 'BUY', '0.25', '100');
    await trade(c, 'OI-PERP', 'SELL', '1.75', '100');
    const market = (await api('GET', '/markets/OI-PERP')).body;
    expect(market.open_interest).toEqual({ long: '1.75', short: '1.75' });
    expect(market.holders).toBe(3);
  });
});

describe('the trade price band', () => {
  it('refuses the self-priced trade that minted money (buy at 1, sell at 1e20-1), with the band in the details', async () => {
    await api('POST', '/mark-price', { symbol: 'MINT-PERP', price: '100' });
    const id = await fundedAccount('200');
    const buy = await trade(id, 'MINT-PERP', 'BUY', '1', '1');
    expect(buy.status).toBe(422);
    expect(buy.body.error).toEqual({
      code: 'PRICE_OUT_OF_BAND',
      message: expect.any(String),
      details: { mark_price: '100', min_price: '95', max_price: '105' },
    });
    const sell = await trade(id, 'MINT-PERP', 'SELL', '1', '99999999999999999999');
    expect(sell.status).toBe(422);
    expect(sell.body.error.code).toBe('PRICE_OUT_OF_BAND');
    expect((await api('GET', `/positions/${id}`)).body).toMatchObject({ balance: '200', positions: [] });
    expect((await api('POST', `/accounts/${id}/withdraw`, { amount: '201' })).status).toBe(422);
  });

  it('takes prices on the band edges, also for a reducing trade, and follows the per-market band', async () => {
    await api('POST', '/mark-price', { symbol: 'BAND-PERP', price: '200' });
    const id = await fundedAccount();
    expect((await trade(id, 'BAND-PERP', 'BUY', '1', '210')).status).toBe(200); // 200 · 1.05
    expect((await trade(id, 'BAND-PERP', 'SELL', '0.5', '189.99')).body.error.code).toBe('PRICE_OUT_OF_BAND'); // below 190
    expect((await trade(id, 'BAND-PERP', 'SELL', '0.5', '190')).status).toBe(200);
    await api('PUT', '/markets/BAND-PERP', { trade_price_band: '0.01' });
    expect((await trade(id, 'BAND-PERP', 'SELL', '0.5', '197.99')).body.error.details).toEqual({ mark_price: '200', min_price: '198', max_price: '202' });
    await api('PUT', '/markets/BAND-PERP', { trade_price_band: '0' });
    expect((await trade(id, 'BAND-PERP', 'SELL', '0.5', '1')).status).toBe(200);
  });

  it('does not apply while the market has no mark', async () => {
    await listMarkets(te.app, 'NOMARK-PERP');
    const id = await fundedAccount();
    expect((await trade(id, 'NOMARK-PERP', 'BUY', '1', '12345')).status).toBe(200);
  });
});

describe('market status', () => {
  it('halted refuses every trade with MARKET_HALTED, while marks and liquidations go on', async () => {
    await api('POST', '/mark-price', { symbol: 'HALT-PERP', price: '100' });
    const id = await fundedAccount('25'); // 1 at 100: IM 20 ≤ 25, MM 10
    expect((await trade(id, 'HALT-PERP', 'BUY', '1', '100')).status).toBe(200);
    expect((await api('PUT', '/markets/HALT-PERP', { status: 'halted' })).body.status).toBe('halted');
    const refused = await trade(id, 'HALT-PERP', 'SELL', '1', '100');
    expect(refused.status).toBe(422);
    expect(refused.body.error.code).toBe('MARKET_HALTED');
    // mark 80: equity 25 − 20 = 5 < MM 8: liquidated although the market is halted
    const tick = await api('POST', '/mark-price', { symbol: 'HALT-PERP', price: '80' });
    expect(tick.body.liquidated).toEqual([id]);
  });

  it('reduce_only takes reducing trades and refuses the rest with MARKET_REDUCE_ONLY', async () => {
    await api('POST', '/mark-price', { symbol: 'RO-PERP', price: '100' });
    const id = await fundedAccount();
    await trade(id, 'RO-PERP', 'BUY', '2', '100');
    await api('PUT', '/markets/RO-PERP', { status: 'reduce_only' });
    expect((await trade(id, 'RO-PERP', 'BUY', '1', '100')).body.error.code).toBe('MARKET_REDUCE_ONLY');
    expect((await trade(id, 'RO-PERP', 'SELL', '3', '100')).body.error.code).toBe('MARKET_REDUCE_ONLY'); // would flip
    expect((await trade(id, 'RO-PERP', 'SELL', '1.5', '100')).status).toBe(200);
    const other = await fundedAccount();
    expect((await trade(other, 'RO-PERP', 'SELL', '1', '100')).body.error.code).toBe('MARKET_REDUCE_ONLY');
    await api('PUT', '/markets/RO-PERP', { status: 'active' });
    expect((await trade(other, 'RO-PERP', 'SELL', '1', '100')).status).toBe(200);
  });

  it('checks in the contract order: a known client_order_id answers as first booked before status and band', async () => {
    await api('POST', '/mark-price', { symbol: 'ORDER-PERP', price: '100' });
    const id = await fundedAccount();
    const first = await trade(id, 'ORDER-PERP', 'BUY', '1', '100', { client_order_id: 'o-1' });
    expect(first.status).toBe(200);
    await api('PUT', '/markets/ORDER-PERP', { status: 'halted' });
    const repeat = await trade(id, 'ORDER-PERP', 'BUY', '1', '100', { client_order_id: 'o-1' });
    expect(repeat.status).toBe(200);
    expect(repeat.body.trade_id).toBe(first.body.trade_id);
    expect((await trade(id, 'ORDER-PERP', 'BUY', '2', '100', { client_order_id: 'o-1' })).status).toBe(409);
    expect((await trade(id, 'ORDER-PERP', 'BUY', '1', '100', { client_order_id: 'o-2' })).body.error.code).toBe('MARKET_HALTED');
    // 404 comes before the client order id
    expect((await trade(id, 'GONE-PERP', 'BUY', '1', '100', { client_order_id: 'o-1' })).body.error.code).toBe('MARKET_NOT_FOUND');
  });
});

describe('the mark move guard', () => {
  it('refuses a move beyond max_mark_move with MARK_MOVE_TOO_LARGE and changes nothing; "force": true posts it', async () => {
    await api('POST', '/mark-price', { symbol: 'MOVE-PERP', price: '100' });
    const refused = await api('POST', '/mark-price', { symbol: 'MOVE-PERP', price: '151' }); // MARK_MAX_MOVE 0.5: 50..150
    expect(refused.status).toBe(422);
    expect(refused.body.error).toMatchObject({
      code: 'MARK_MOVE_TOO_LARGE',
      details: { symbol: 'MOVE-PERP', mark_price: '100', max_mark_move: '0.5', min_price: '50', max_price: '150' },
    });
    expect((await api('GET', '/markets/MOVE-PERP')).body.mark_price).toBe('100');
    const rows = await te.db.sql<{ version: string }[]>`SELECT version FROM mark_prices WHERE symbol = 'MOVE-PERP'`;
    expect(rows.map((r) => r.version)).toEqual(['1']);
    expect((await api('POST', '/mark-price', { symbol: 'MOVE-PERP', price: '150' })).status).toBe(200);
    const forced = await api('POST', '/mark-price', { symbol: 'MOVE-PERP', price: '1000', force: true });
    expect(forced.status).toBe(200);
    expect((await api('GET', '/markets/MOVE-PERP')).body.mark_price).toBe('1000');
    const events = (await api('GET', '/markets/MOVE-PERP/history?limit=2')).body;
    expect(events.events.map((e: { price: string; forced: boolean }) => [e.price, e.forced])).toEqual([
      ['1000', true],
      ['150', false],
    ]);
    expect(events.next_cursor).not.toBeNull();
  });

  it('follows the market own max_mark_move (0 turns it off)', async () => {
    await api('POST', '/mark-price', { symbol: 'MOVE2-PERP', price: '100' });
    await api('PUT', '/markets/MOVE2-PERP', { max_mark_move: '0.1' });
    expect((await api('POST', '/mark-price', { symbol: 'MOVE2-PERP', price: '111' })).body.error.code).toBe('MARK_MOVE_TOO_LARGE');
    await api('PUT', '/markets/MOVE2-PERP', { max_mark_move: '0' });
    expect((await api('POST', '/mark-price', { symbol: 'MOVE2-PERP', price: '1000' })).status).toBe(200);
  });
});

describe('the cost of a tick with many markets', () => {
  it('re-reads only the symbols that changed, however many other markets there are', async () => {
    const { redis } = te.db;
    const { keys } = te;
    // 2,000 other markets with marks, posted straight to Redis.
    for (let i = 0; i < 2000; i++) await publishMarket(redis, keys, `JUNK${i}`, { price: '1', version: 1 }, { json: '{"status":"active","params":{}}', version: 1 });
    const read: string[] = [];
    const counting = new Proxy(redis, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          read.push(String(prop));
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const book = new MarkBook(counting, keys, defaultMarketParams(te.config));
    const full = await book.snapshot();
    expect(full.marks.size).toBeGreaterThanOrEqual(2000);
    expect(read).toContain('hgetall');
    read.length = 0;
    await publishMarket(redis, keys, 'JUNK7', { price: '2', version: 2 }, null);
    const after = await book.snapshot();
    expect(read).not.toContain('hgetall'); // the change log, not the whole hash
    expect(after.marks.get('JUNK7')!.eq(new D(2))).toBe(true);
    expect(full.marks.get('JUNK7')!.eq(new D(1))).toBe(true); // books handed out before stay as they were
    expect(after.markets.get('JUNK7')?.status).toBe('active');
  });
});
