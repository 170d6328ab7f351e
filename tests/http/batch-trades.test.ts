/**
 * POST /trades: a batch of trade bodies, one result per item in order, each
 * what POST /trade would have answered (its body, and its status).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, newIsolation, startTestEngine, type EngineFixture, type Res } from '../helpers/engine.js';
import { TcpProxy, targetOf, viaProxy } from '../helpers/tcp-proxy.js';
import { sleep, until } from '../helpers/until.js';

let f: EngineFixture;

beforeAll(async () => {
  f = await startTestEngine({ firstAccount: 100 });
  await f.mark('BTC-PERP', 50000);
  await f.mark('ETH-PERP', 3000);
});
afterAll(async () => {
  await f?.close();
});

const ok = (res: Res, status = 200) => {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  return res.body;
};
const batch = (trades: unknown, key?: string | null) => f.post('/trades', { trades }, key);
const ledgerRows = async () => (await f.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ledger`)[0]!.n;
const tradeRows = async (id: number) =>
  f.db.sql<{ trade_id: string; seq: string; side: string; quantity: string; client_order_id: string | null; created_at: Date }[]>`
    SELECT trade_id, seq, side, quantity, client_order_id, created_at FROM trades WHERE account_id = ${id} AND liquidation_id IS NULL ORDER BY seq`;
const buy = (account_id: number, quantity: string, price: string, extra: object = {}) => ({ account_id, symbol: 'BTC-PERP', side: 'BUY', quantity, price, ...extra });
const sell = (account_id: number, quantity: string, price: string, extra: object = {}) => ({ account_id, symbol: 'BTC-PERP', side: 'SELL', quantity, price, ...extra });

async function scrape(): Promise<string> {
  const res = await f.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  return res.body;
}
function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

describe('POST /trades', () => {
  it('books the items of one account in their order, and answers each in order', async () => {
    const a = f.freshAccount();
    const b = f.freshAccount();
    await f.deposit(a, 1000);
    await f.deposit(b, 100000);
    // Account a (1,000 of equity, IM 20 %): each item's answer depends on the ones before it.
    const { results } = ok(
      await batch([
        buy(a, '0.1', '50000'), // IM 1000 = equity: accepted
        buy(b, '1', '3000', { symbol: 'ETH-PERP' }),
        buy(a, '0.01', '50000'), // IM 1100 > 1000: refused, only because the first is booked
        sell(a, '0.1', '51000'), // closes the long: realised 0.1 · (51000 − 50000) = 100
        buy(b, '1', '3100', { symbol: 'ETH-PERP' }), // entry (3000 + 3100) / 2 = 3050
        buy(a, '0.01', '50000'), // now accepted: IM 100 ≤ 1100
        sell(b, '2.5', '3000', { symbol: 'ETH-PERP' }), // closes 2 at 3000 (−100), opens −0.5
      ]),
    );
    expect(results.map((r: { status: number }) => r.status)).toEqual([200, 200, 422, 200, 200, 200, 200]);
    expect(results[0]).toMatchObject({ status: 200, success: true, account_id: a, position: { quantity: '0.1', entry_price: '50000' }, balance: '1000' });
    expect(results[2]).toMatchObject({ status: 422, success: false, error: { code: 'INSUFFICIENT_MARGIN', details: { required: '1100', available: '1000' } } });
    expect(results[3]).toMatchObject({ realised_pnl: '100', balance: '1100', position: { quantity: '0', entry_price: null } });
    expect(results[5]).toMatchObject({ balance: '1100', position: { quantity: '0.01', entry_price: '50000' } });
    expect(results[4]).toMatchObject({ position: { symbol: 'ETH-PERP', quantity: '2', entry_price: '3050' } });
    expect(results[6]).toMatchObject({ realised_pnl: '-100', balance: '99900', position: { quantity: '-0.5', entry_price: '3000' } });
    // Success means committed: the ledger holds each booked item once, in the items' order.
    const rows = await tradeRows(a);
    expect(rows.map((r) => Number(r.trade_id))).toEqual([results[0].trade_id, results[3].trade_id, results[5].trade_id]);
    expect(rows.map((r) => Number(r.seq))).toEqual([2, 3, 4]);
    expect((await tradeRows(b)).map((r) => Number(r.trade_id))).toEqual([results[1].trade_id, results[4].trade_id, results[6].trade_id]);
    expect(ok(await f.get(`/positions/${a}`))).toMatchObject({ balance: '1100', positions: [{ symbol: 'BTC-PERP', quantity: '0.01' }] });
  });

  it('runs items on different accounts concurrently: their rows share commits, where one account\'s items commit one by one', async () => {
    const many = Array.from({ length: 40 }, () => f.freshAccount());
    const one = f.freshAccount();
    for (const id of [...many, one]) await f.deposit(id, 10000);
    const spread = ok(await batch(many.map((id) => buy(id, '0.01', '50000')))).results;
    expect(spread.every((r: { status: number }) => r.status === 200)).toBe(true);
    const serial = ok(await batch(Array.from({ length: 8 }, () => buy(one, '0.01', '50000')))).results;
    expect(serial.every((r: { status: number }) => r.status === 200)).toBe(true);
    // A commit's rows share its transaction's now(): rows of one commit have one created_at.
    const commitsOf = async (ids: number[]) => {
      const rows = await f.db.sql<{ n: number }[]>`SELECT count(DISTINCT created_at)::int AS n FROM trades WHERE account_id = ANY(${ids})`;
      return rows[0]!.n;
    };
    // 40 accounts' items, submitted together, go out in a few group commits (COMMIT_EARLY_ROWS is 32).
    expect(await commitsOf(many)).toBeLessThanOrEqual(4);
    // One account's items wait for each other: each is its own commit, in order.
    expect(await commitsOf([one])).toBe(8);
    expect((await tradeRows(one)).map((r) => Number(r.trade_id))).toEqual(serial.map((r: { trade_id: number }) => r.trade_id));
  });

  it('answers every kind of refusal per item, as POST /trade would, and books the rest', async () => {
    const id = f.freshAccount();
    const broke = f.freshAccount();
    await f.deposit(id, 10000);
    ok(await f.put('/markets/HALT-PERP', {}));
    await f.mark('HALT-PERP', 100);
    ok(await f.put('/markets/HALT-PERP', { status: 'halted' }));
    ok(await f.put('/markets/RO-PERP', {}));
    await f.mark('RO-PERP', 100);
    ok(await f.put('/markets/RO-PERP', { status: 'reduce_only' }));
    const before = await ledgerRows();
    const { results } = ok(
      await batch([
        buy(id, '0.01', '50000', { client_order_id: 'k-1' }),
        { ...buy(id, '0.01', '50000'), side: 'HOLD' },
        buy(id, '0.01', '50000', { symbol: 'NOPE-PERP' }),
        buy(id, '0.01', '50000', { client_order_id: 'k-1', price: '50001' }),
        buy(id, '10', '50000'),
        buy(broke, '0.01', '50000'),
        buy(id, '1', '100', { symbol: 'HALT-PERP' }),
        buy(id, '1', '100', { symbol: 'RO-PERP' }),
        buy(id, '0.01', '60000'),
        'not a trade',
      ]),
    );
    const codes = results.map((r: any) => [r.status, r.success ? 'OK' : r.error.code]);
    expect(codes).toEqual([
      [200, 'OK'],
      [400, 'VALIDATION_ERROR'],
      [404, 'MARKET_NOT_FOUND'],
      [409, 'IDEMPOTENCY_CONFLICT'],
      [422, 'INSUFFICIENT_MARGIN'],
      [422, 'INSUFFICIENT_MARGIN'],
      [422, 'MARKET_HALTED'],
      [422, 'MARKET_REDUCE_ONLY'],
      [422, 'PRICE_OUT_OF_BAND'],
      [400, 'VALIDATION_ERROR'],
    ]);
    expect(results[1]).toEqual({
      status: 400,
      success: false,
      error: { code: 'VALIDATION_ERROR', message: 'invalid body.side', details: { fields: [{ field: 'body.side', message: 'must be "BUY" or "SELL"' }] } },
    });
    expect(results[9].error.details.fields).toEqual([{ field: 'body', message: expect.any(String) }]);
    expect(await ledgerRows()).toBe(before + 1);
  });

  it('is idempotent by client order id per item, within a batch and across batches and routes', async () => {
    const id = f.freshAccount();
    const other = f.freshAccount();
    await f.deposit(id, 10000);
    await f.deposit(other, 10000);
    const first = ok(
      await batch([
        buy(id, '0.01', '50000', { client_order_id: 'dup' }),
        buy(id, '0.010', '50000', { client_order_id: 'dup' }), // the same trade (0.01 = 0.010): its first answer
        sell(id, '0.01', '50000', { client_order_id: 'dup' }), // other parameters: 409
        buy(other, '0.01', '50000', { client_order_id: 'dup' }), // another account: its own id
      ]),
    ).results;
    expect(first.map((r: { status: number }) => r.status)).toEqual([200, 200, 409, 200]);
    const body = Object.fromEntries(Object.entries(first[0]).filter(([k]) => k !== 'status'));
    expect(first[1]).toEqual(first[0]);
    expect(first[3].trade_id).not.toBe(first[0].trade_id);
    const again = ok(await batch([buy(id, '0.01', '50000', { client_order_id: 'dup' }), buy(id, '0.02', '50000', { client_order_id: 'dup' })])).results;
    expect(again[0]).toEqual(first[0]);
    expect(again[1]).toMatchObject({ status: 409, error: { code: 'IDEMPOTENCY_CONFLICT' } });
    // POST /trade sees the batch's booking, and the batch sees POST /trade's.
    expect(ok(await f.trade(id, 'BTC-PERP', 'BUY', '0.01', '50000', { client_order_id: 'dup' }))).toEqual(body);
    const single = ok(await f.trade(id, 'BTC-PERP', 'BUY', '0.01', '50000', { client_order_id: 'single' }));
    expect(ok(await batch([buy(id, '0.01', '50000', { client_order_id: 'single' })])).results).toEqual([{ status: 200, ...single }]);
    const rows = await tradeRows(id);
    expect(rows.map((r) => r.client_order_id)).toEqual(['dup', 'single']);
  });

  it('refuses a malformed envelope with 400, booking nothing', async () => {
    const id = f.freshAccount();
    await f.deposit(id, 10000);
    const good = buy(id, '0.01', '50000');
    const before = await ledgerRows();
    const refused = async (payload: unknown, field: string) => {
      const res = await f.post('/trades', payload);
      expect(res.status, JSON.stringify(res.body)).toBe(400);
      expect(res.body).toMatchObject({ success: false, error: { code: 'VALIDATION_ERROR' } });
      expect(res.body.error.details.fields.map((x: { field: string }) => x.field)).toContain(field);
    };
    await refused([good], 'body');
    await refused({}, 'body.trades');
    await refused({ trades: good }, 'body.trades');
    await refused({ trades: [] }, 'body.trades');
    await refused({ trades: Array.from({ length: 1001 }, () => good) }, 'body.trades');
    await refused({ trades: [good], dry_run: true }, 'body.dry_run');
    await refused('{"trades": [', 'body');
    // A key given twice anywhere in the JSON text refuses the whole body.
    await refused(`{"trades": [${JSON.stringify(good)}, {"account_id": ${id}, "account_id": ${id}}]}`, 'body.trades.1.account_id');
    expect(await ledgerRows()).toBe(before);
  });

  it('takes 1,000 of the largest trade bodies, pretty-printed, and refuses a body over 1 MiB with 413', async () => {
    // The longest fields the schema accepts; an unfunded account, so each is refused (422) and nothing is booked.
    const largest = {
      account_id: 9007199254740991,
      symbol: 'ABCDEFGHIJKLMNOPQRSTUVWXYZ012345',
      side: 'SELL',
      quantity: '12345678901234567890.123456789012345678',
      price: '12345678901234567890.123456789012345678',
      liquidity: 'maker',
      client_order_id: '"\\'.repeat(32),
    };
    const body = JSON.stringify({ trades: Array.from({ length: 1000 }, () => largest) }, null, 2);
    expect(body.length).toBeGreaterThan(400 * 1024); // over six times the other routes' 64 KiB
    const res = await f.post('/trades', body);
    expect(res.status).toBe(200);
    expect(res.body.results).toHaveLength(1000);
    expect(res.body.results[999]).toMatchObject({ status: 404, error: { code: 'MARKET_NOT_FOUND' } });
    const over = JSON.stringify({ trades: [buy(1, '1', '1', { client_order_id: 'x'.repeat(64) })], pad: ' '.repeat(1024 * 1024) });
    const tooLarge = await f.post('/trades', over);
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.body.error.code).toBe('PAYLOAD_TOO_LARGE');
    // POST /trade keeps its 64 KiB.
    expect((await f.post('/trade', JSON.stringify({ ...buy(1, '1', '1'), pad: ' '.repeat(64 * 1024) }))).status).toBe(413);
  });

  it('takes trading and admin keys only, checked before anything is booked', async () => {
    const id = f.freshAccount();
    await f.deposit(id, 10000);
    const key = async (role: string, account_ids?: number[]) => ok(await f.post('/admin/keys', { name: `batch ${role}`, role, ...(account_ids ? { account_ids } : {}) }), 201).key as string;
    const trading = await key('trading');
    const before = await ledgerRows();
    const noKey = await batch([buy(id, '0.01', '50000')], null);
    expect(noKey).toMatchObject({ status: 401, body: { error: { code: 'UNAUTHENTICATED' } } });
    // An account key may not book trades, not even on its own account (as POST /trade).
    for (const refused of [await key('account', [id]), await key('reader'), await key('treasury')]) {
      const res = await batch([buy(id, '0.01', '50000')], refused);
      expect(res).toMatchObject({ status: 403, body: { error: { code: 'FORBIDDEN' } } });
      expect((await f.post('/trade', buy(id, '0.01', '50000'), refused)).status).toBe(403);
    }
    expect(await ledgerRows()).toBe(before);
    const booked = ok(await batch([buy(id, '0.01', '50000')], trading)).results;
    expect(booked).toMatchObject([{ status: 200, success: true }]);
    const [row] = await f.db.sql`SELECT actor FROM ledger WHERE entry_id = ${booked[0].trade_id}`;
    expect(row!.actor).toBe(trading.split('.')[0]);
  });

  it('counts each item as a booked or refused trade, and the request under its route', async () => {
    const id = f.freshAccount();
    await f.deposit(id, 10000);
    const before = await scrape();
    ok(await batch([buy(id, '0.01', '50000'), buy(id, '0.01', '50000', { symbol: 'NOPE-PERP' }), buy(id, '0.01', '50000'), { account_id: id }]));
    const after = await scrape();
    const delta = (series: string) => sample(after, series) - sample(before, series);
    expect(delta('margin_engine_trades_booked_total')).toBe(2);
    expect(delta('margin_engine_trades_rejected_total{code="MARKET_NOT_FOUND"}')).toBe(1);
    expect(delta('margin_engine_trades_rejected_total{code="VALIDATION_ERROR"}')).toBe(1);
    expect(delta('margin_engine_trade_batch_items_count')).toBe(1);
    expect(delta('margin_engine_trade_batch_items_sum')).toBe(4);
    expect(delta('margin_engine_http_requests_total{method="POST",route="/trades",status="200"}')).toBe(1);
  });
});

describe('POST /trades against POST /trade', () => {
  /**
   * The same bodies, once through POST /trade one by one and once as one
   * batch, on twin accounts (the batch's are the single run's + 1000): every
   * item's result is the single route's body and status, but for the ids
   * that must differ.
   */
  it('answers each item exactly as POST /trade answered the same body', async () => {
    ok(await f.put('/markets/FEE-PERP', { taker_fee_rate: '0.5' }));
    await f.mark('FEE-PERP', 50000);
    const rich = 500;
    const poor = 501;
    const thin = 502;
    const never = 503; // never funded
    for (const offset of [0, 1000]) {
      await f.deposit(rich + offset, 10000);
      await f.deposit(poor + offset, 1000);
      await f.deposit(thin + offset, 2000);
      // IM 2000 = equity, MM 1000; maker: no fee
      ok(await f.trade(thin + offset, 'FEE-PERP', 'BUY', '0.2', 50000, { liquidity: 'maker' }));
    }
    const bodies = (o: number): unknown[] => [
      buy(rich + o, '0.1', '50000', { client_order_id: 'c-1' }), // accepted
      buy(poor + o, '1', '50000'), // IM 10000 > 1000: refused
      buy(rich + o, '0.1', '50000', { symbol: 'NOPE-PERP' }), // unknown market
      { account_id: rich + o, symbol: 'BTC-PERP', side: 'BUY', quantity: '-1', price: 50000, extra: true }, // malformed
      { account_id: rich + o, symbol: 'btc', side: 'BUY', quantity: 1, price: 1, client_order_id: 'has space' },
      null,
      42,
      buy(rich + o, '0.1', '50000', { client_order_id: 'c-1' }), // repeated: the first answer
      sell(rich + o, '0.1', '50000', { client_order_id: 'c-1' }), // same id, other parameters: 409
      buy(never + o, '0.01', '50000'), // no funds
      // reduces 0.1 as taker: fee 0.5 · 0.1 · 50000 = 2500 → balance −500 < MM 500: liquidated before the answer
      { account_id: thin + o, symbol: 'FEE-PERP', side: 'SELL', quantity: '0.1', price: '50000' },
      // decided on the account as the liquidation left it (flat), not before it
      { account_id: thin + o, symbol: 'FEE-PERP', side: 'BUY', quantity: '0.01', price: '50000', liquidity: 'maker' },
      sell(rich + o, '0.05', '50100'), // accepted: realises 0.05 · 100 = 5
      buy(poor + o, '0.02', '50000', { liquidity: 'maker' }), // accepted
    ];
    const single: { status: number; body: unknown }[] = [];
    for (const body of bodies(0)) {
      const res = await f.post('/trade', body);
      single.push({ status: res.status, body: res.body });
    }
    const { results } = ok(await batch(bodies(1000)));
    expect(results).toHaveLength(single.length);
    expect(single.map((r) => r.status)).toEqual([200, 422, 404, 400, 400, 400, 400, 200, 409, 422, 200, 422, 200, 200]);
    // The single run's liquidation happened before its next item, and the batch's too.
    expect(single[11]!.body).toMatchObject({ error: { details: { required: '100', available: '0' } } });

    // Ids that must differ: trade ids (each replaced by the index of the first item that answered it) and the twin account ids.
    const normalise = (items: unknown[]) => {
      const firstAt = new Map<number, number>();
      return items.map((item, i) =>
        JSON.parse(
          JSON.stringify(item, (key, value: unknown) => {
            if (key === 'trade_id' && typeof value === 'number') {
              if (!firstAt.has(value)) firstAt.set(value, i);
              return `trade of item ${firstAt.get(value)}`;
            }
            if (typeof value === 'number' && value > 1000 && value < 1600) return value - 1000;
            if (typeof value === 'string') return value.replace(/\b1(5\d\d)\b/g, '$1');
            return value;
          }),
        ),
      );
    };
    expect(normalise(results)).toEqual(normalise(single.map((r) => ({ status: r.status, ...(r.body as object) }))));
    // And the books agree: each twin's ledger is the other's.
    for (const id of [rich, poor, thin, never]) {
      const rows = async (a: number) =>
        (await f.db.sql`SELECT seq, kind, symbol, side, quantity, price, realised_pnl, client_order_id, balance, liquidation_id IS NOT NULL AS liquidation FROM ledger WHERE account_id = ${a} ORDER BY seq`).map((r) => ({ ...r }));
      expect(await rows(id + 1000)).toEqual(await rows(id));
    }
  });
});

describe('POST /trades with PostgreSQL unreachable', () => {
  let pgProxy: TcpProxy;
  let g: EngineFixture;
  beforeAll(async () => {
    const iso = newIsolation();
    const pg = targetOf(iso.databaseUrl, 5432);
    pgProxy = new TcpProxy(pg.host, pg.port);
    g = await startTestEngine({ iso, env: { DATABASE_URL: viaProxy(iso.databaseUrl, await pgProxy.start()) } });
    await g.mark('BTC-PERP', 50000);
    await g.deposit(1, 10000);
    await g.deposit(2, 10000);
  });
  afterAll(async () => {
    await g?.close();
    await pgProxy?.close();
  });

  it('answers each item 503 (a malformed one still 400), with Retry-After, books nothing, and books once PostgreSQL is back', async () => {
    const rows = async () => (await g.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ledger`)[0]!.n;
    const before = await rows();
    const trades = [buy(1, '0.01', '50000', { client_order_id: 'o-1' }), buy(2, '0.01', '50000', { client_order_id: 'o-2' }), { account_id: 1 }];
    const send = () =>
      g.app.inject({ method: 'POST', url: '/trades', headers: { authorization: `Bearer ${ADMIN_KEY}` }, payload: { trades } });
    pgProxy.cut();
    try {
      await sleep(60); // the outage in place (a trade racing the cut may be booked)
      const res = await send();
      expect(res.statusCode).toBe(200);
      expect(res.headers['retry-after']).toBe('1');
      const { results } = res.json();
      expect(results.map((r: any) => [r.status, r.error?.code])).toEqual([
        [503, 'SERVICE_UNAVAILABLE'],
        [503, 'SERVICE_UNAVAILABLE'],
        [400, 'VALIDATION_ERROR'],
      ]);
      expect(results[0].error.details).toEqual({ dependency: 'postgres' });
    } finally {
      await pgProxy.restore();
    }
    expect(await rows()).toBe(before);
    const served = await until(async () => (await send()).json(), { ok: (b) => b.results[0].status === 200, everyMs: 100, what: 'the batch booked' });
    expect(served.results.map((r: any) => r.status)).toEqual([200, 200, 400]);
    expect(await rows()).toBe(before + 2);
  });
});
