/**
 * GET /metrics: Prometheus text, for readers and up, counting what the
 * engine does as a client drives it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, startTestEngine, type EngineFixture } from '../helpers/engine.js';

let te: EngineFixture;

beforeAll(async () => {
  te = await startTestEngine();
});

afterAll(async () => {
  await te?.close();
});

async function scrape(key?: string): Promise<{ status: number; type: string | undefined; text: string }> {
  const res = await te.app.inject({ method: 'GET', url: '/metrics', headers: key === undefined ? {} : { authorization: `Bearer ${key}` } });
  return { status: res.statusCode, type: res.headers['content-type'] as string | undefined, text: res.body };
}

/** The value of one sample line (exact labels as printed), or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('GET /metrics', () => {
  it('needs a reading key: 401 without one, 403 for an account key', async () => {
    expect((await scrape()).status).toBe(401);
    const account = await call(te.app, 'POST', '/admin/keys', { name: 'acct', role: 'account', account_ids: [1] });
    expect((await scrape(account.body.key)).status).toBe(403);
  });

  it('counts booked and refused trades by code, liquidations, commits and requests, and reports the stores and accounts', async () => {
    const reader = (await call(te.app, 'POST', '/admin/keys', { name: 'scraper', role: 'reader' })).body.key as string;
    await call(te.app, 'POST', '/mark-price', { symbol: 'M-PERP', price: '100' });
    await call(te.app, 'POST', '/accounts/7/deposit', { amount: '25' });
    expect((await call(te.app, 'POST', '/trade', { account_id: 7, symbol: 'M-PERP', side: 'BUY', quantity: '1', price: '100' })).status).toBe(200);
    expect((await call(te.app, 'POST', '/trade', { account_id: 7, symbol: 'M-PERP', side: 'BUY', quantity: '1', price: '200' })).status).toBe(422);
    expect((await call(te.app, 'POST', '/trade', { account_id: 7, symbol: 'NOPE', side: 'BUY', quantity: '1', price: '1' })).status).toBe(404);
    // mark 80: equity 5 < MM 8, liquidated
    expect((await call(te.app, 'POST', '/mark-price', { symbol: 'M-PERP', price: '80' })).body.liquidated).toEqual([7]);

    const { status, type, text } = await scrape(reader);
    expect(status).toBe(200);
    expect(type).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(sample(text, 'margin_engine_trades_booked_total')).toBe(1);
    expect(sample(text, 'margin_engine_trades_rejected_total{code="PRICE_OUT_OF_BAND"}')).toBe(1);
    expect(sample(text, 'margin_engine_trades_rejected_total{code="MARKET_NOT_FOUND"}')).toBe(1);
    expect(sample(text, 'margin_engine_liquidations_total{mode="full",reason="mark_price"}')).toBe(1);
    expect(sample(text, 'margin_engine_liquidation_shortfall_total')).toBe(0);
    expect(sample(text, 'margin_engine_http_requests_total{method="POST",route="/trade",status="200"}')).toBe(1);
    expect(sample(text, 'margin_engine_http_requests_total{method="POST",route="/trade",status="422"}')).toBe(1);
    expect(sample(text, 'margin_engine_mark_tick_duration_seconds_count{outcome="complete"}')).toBe(2);
    // Latency of the three trades: cumulative buckets ending at the count, and a sum of seconds.
    const trades = (suffix: string, le?: string) =>
      sample(text, `margin_engine_http_request_duration_seconds_${suffix}{${le === undefined ? '' : `le="${le}",`}method="POST",route="/trade"}`);
    expect(trades('count')).toBe(3);
    expect(trades('bucket', '+Inf')).toBe(3);
    const buckets = ['0.0005', '0.001', '0.0025', '0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5'].map((le) => trades('bucket', le)!);
    expect(buckets.every((b, i) => b >= (buckets[i - 1] ?? 0) && b <= 3)).toBe(true);
    expect(trades('sum')).toBeGreaterThan(0);
    expect(sample(text, 'margin_engine_group_commit_rows_count')).toBeGreaterThanOrEqual(3); // deposit, trade, liquidation
    expect(sample(text, 'margin_engine_group_commit_duration_seconds_count')).toBeGreaterThanOrEqual(3);
    expect(sample(text, 'margin_engine_store_up{store="redis"}')).toBe(1);
    expect(sample(text, 'margin_engine_store_up{store="postgres"}')).toBe(1);
    expect(sample(text, 'margin_engine_accounts')).toBe(1);
    expect(text).toMatch(/^margin_engine_nodejs_eventloop_lag_seconds /m);
    expect(text).toMatch(/^margin_engine_process_resident_memory_bytes /m);
  });

  it('counts an answer to no route as route "unmatched", and counts each answer once', async () => {
    const reader = (await call(te.app, 'POST', '/admin/keys', { name: 'scraper-2', role: 'reader' })).body.key as string;
    const before = sample((await scrape(reader)).text, 'margin_engine_http_requests_total{method="GET",route="unmatched",status="404"}') ?? 0;
    for (let i = 0; i < 3; i++) expect((await te.app.inject({ method: 'GET', url: `/no/such/${i}` })).statusCode).toBe(404);
    const { text } = await scrape(reader);
    expect(sample(text, 'margin_engine_http_requests_total{method="GET",route="unmatched",status="404"}')).toBe(before + 3);
    expect(text).not.toContain('/no/such');
    // The scrape before this one was answered, so it is counted.
    expect(sample(text, 'margin_engine_http_requests_total{method="GET",route="/metrics",status="200"}')).toBeGreaterThanOrEqual(1);
  });
});
