/**
 * Market changes across engine processes sharing one Redis and PostgreSQL:
 * a market listed, halted or re-banded through one engine is in force on
 * the other at once, because each market's status and parameters travel
 * with the marks every trade reads.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, startEngine, startTestEngine, type EngineFixture, type TestEngine } from '../helpers/engine.js';

let a: EngineFixture;
let b: TestEngine;

beforeAll(async () => {
  a = await startTestEngine();
  b = await startEngine(a.iso);
});

afterAll(async () => {
  await b?.close();
  await a?.close();
});

const trade = (e: TestEngine, account_id: number, price: string, quantity = '1') =>
  call(e.app, 'POST', '/trade', { account_id, symbol: 'XE-PERP', side: 'BUY', quantity, price });

describe('a market changed through one engine', () => {
  it('is listed, halted, re-opened and re-banded on the other at once', async () => {
    await call(a.app, 'POST', '/accounts/1/deposit', { amount: '100000' });
    expect((await trade(b, 1, '100')).body.error.code).toBe('MARKET_NOT_FOUND');
    expect((await call(a.app, 'POST', '/mark-price', { symbol: 'XE-PERP', price: '100' })).status).toBe(200);
    expect((await trade(b, 1, '100')).status).toBe(200);

    expect((await call(a.app, 'PUT', '/markets/XE-PERP', { status: 'halted' })).status).toBe(200);
    expect((await trade(b, 1, '100')).body.error.code).toBe('MARKET_HALTED');

    expect((await call(a.app, 'PUT', '/markets/XE-PERP', { status: 'active', trade_price_band: '0.01' })).status).toBe(200);
    expect((await trade(b, 1, '101')).status).toBe(200);
    expect((await trade(b, 1, '101.01')).body.error).toMatchObject({ code: 'PRICE_OUT_OF_BAND', details: { min_price: '99', max_price: '101' } });
    // Both engines' views of the market agree.
    const [va, vb] = await Promise.all([call(a.app, 'GET', '/markets/XE-PERP'), call(b.app, 'GET', '/markets/XE-PERP')]);
    expect(vb.body).toEqual(va.body);
    expect(va.body).toMatchObject({ status: 'active', trade_price_band: '0.01', open_interest: { long: '2', short: '0' }, holders: 1 });
  });
});
