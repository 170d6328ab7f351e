/**
 * Trading fees and funding payments through the HTTP API, on real Redis and
 * PostgreSQL: worked examples, idempotency, refusals, and a seeded property
 * (the funding rows sum to the answer's totals, each row exactly q·m·r).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { D, type Dec } from '../../src/domain/decimal.js';
import { toStreamEvent } from '../../src/services/events.js';
import { eventsAfter, ORIGIN } from '../../src/store/events.js';
import { startTestEngine, type EngineFixture } from '../helpers/engine.js';

let f: EngineFixture;

beforeAll(async () => {
  f = await startTestEngine({ firstAccount: 1 });
});
afterAll(async () => {
  await f?.close();
});

const fund = (body: object, key?: string | null) => f.post('/funding', body, key);
const ok = <T extends { status: number; body: any }>(res: T, status = 200) => {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  return res.body;
};
const fundingRows = (fundingId: string) =>
  f.db.sql<{ account_id: string; amount: string; balance: string; symbol: string; price: string; position_quantity: string; actor: string | null }[]>`
    SELECT account_id, amount, balance, symbol, price, position_quantity, actor FROM ledger
    WHERE kind = 'FUNDING' AND funding_id = ${fundingId} ORDER BY account_id`;

describe('trading fees', () => {
  beforeAll(async () => {
    ok(await f.put('/markets/FEE-PERP', { maker_fee_rate: '-0.0001', taker_fee_rate: '0.0005' }));
    await f.mark('FEE-PERP', 50000);
  });

  it('charges the taker rate and pays the maker rebate, exactly, into the balance, the answer, the history and fees_collected', async () => {
    const taker = f.freshAccount();
    const maker = f.freshAccount();
    await f.deposit(taker, 10000);
    await f.deposit(maker, 10000);
    // taker: 0.0005 · 0.1 · 50000 = 2.5
    const t = ok(await f.trade(taker, 'FEE-PERP', 'BUY', '0.1', 50000));
    expect(t).toMatchObject({ fee: '2.5', liquidity: 'taker', balance: '9997.5', equity: '9997.5', realised_pnl: '0' });
    // maker: −0.0001 · 0.1 · 50000 = −0.5, a rebate
    const m = ok(await f.trade(maker, 'FEE-PERP', 'SELL', '0.1', 50000, { liquidity: 'maker' }));
    expect(m).toMatchObject({ fee: '-0.5', liquidity: 'maker', balance: '10000.5' });
    // Closing pays the fee on top of the realised PnL: 0.1 · (50100 − 50000) = 10, fee 0.0005 · 0.1 · 50100 = 2.505
    const close = ok(await f.trade(taker, 'FEE-PERP', 'SELL', '0.1', 50100));
    expect(close).toMatchObject({ realised_pnl: '10', fee: '2.505', balance: '10004.995' });

    const history = ok(await f.get(`/trades/${taker}`)).trades;
    expect(history.map((x: any) => [x.fee, x.liquidity])).toEqual([
      ['2.505', 'taker'],
      ['2.5', 'taker'],
    ]);
    expect(ok(await f.get(`/trades/${maker}`)).trades[0]).toMatchObject({ fee: '-0.5', liquidity: 'maker' });
    expect(ok(await f.get(`/positions/${taker}`)).balance).toBe('10004.995');
    // 2.5 − 0.5 + 2.505
    expect(ok(await f.get('/markets/FEE-PERP')).fees_collected).toBe('4.505');
    const all = ok(await f.get('/markets')).markets.find((x: any) => x.symbol === 'FEE-PERP');
    expect(all.fees_collected).toBe('4.505');
  });

  it('decides the margin check on the balance after the fee: accepted without it, refused with it', async () => {
    ok(await f.put('/markets/NOFEE-PERP', {}));
    await f.mark('NOFEE-PERP', 50000);
    const a = f.freshAccount();
    const b = f.freshAccount();
    await f.deposit(a, 1000);
    await f.deposit(b, 1000);
    // 0.1 at 50000: initial margin 1000 = equity 1000 without a fee
    expect(ok(await f.trade(a, 'NOFEE-PERP', 'BUY', '0.1', 50000))).toMatchObject({ fee: '0', balance: '1000' });
    // with the 2.5 taker fee equity would be 997.5 < 1000
    const refused = await f.trade(b, 'FEE-PERP', 'BUY', '0.1', 50000);
    expect(refused.status).toBe(422);
    expect(refused.body.error).toMatchObject({ code: 'INSUFFICIENT_MARGIN', details: { required: '1000', available: '997.5' } });
    expect(ok(await f.get(`/positions/${b}`)).balance).toBe('1000');
    // ...and the same trade as a maker (a rebate) is accepted
    expect(ok(await f.trade(b, 'FEE-PERP', 'BUY', '0.1', 50000, { liquidity: 'maker' }))).toMatchObject({ fee: '-0.5', balance: '1000.5' });
  });

  it('still accepts a reducing trade whose fee leaves the account short of initial margin', async () => {
    const a = f.freshAccount();
    await f.deposit(a, 1003);
    ok(await f.trade(a, 'FEE-PERP', 'BUY', '0.1', 50000)); // fee 2.5, balance 1000.5, IM 1000
    // at 47500 equity is 750.5, IM 950: a reducing sell is accepted, fee and all
    await f.mark('FEE-PERP', 47500);
    expect(ok(await f.trade(a, 'FEE-PERP', 'SELL', '0.01', 47500))).toMatchObject({ fee: '0.2375', realised_pnl: '-25' });
    await f.mark('FEE-PERP', 50000);
  });

  it('puts liquidity in the client order fingerprint', async () => {
    const a = f.freshAccount();
    await f.deposit(a, 10000);
    const first = ok(await f.trade(a, 'FEE-PERP', 'BUY', '0.01', 50000, { client_order_id: 'liq-1', liquidity: 'maker' }));
    expect(ok(await f.trade(a, 'FEE-PERP', 'BUY', '0.01', 50000, { client_order_id: 'liq-1', liquidity: 'maker' }))).toEqual(first);
    const other = await f.trade(a, 'FEE-PERP', 'BUY', '0.01', 50000, { client_order_id: 'liq-1' });
    expect(other.status).toBe(409);
    expect(other.body.error.code).toBe('IDEMPOTENCY_CONFLICT');
  });

  it('refuses a bad liquidity', async () => {
    const res = await f.trade(1, 'FEE-PERP', 'BUY', '0.01', 50000, { liquidity: 'both' });
    expect(res.status).toBe(400);
    expect(res.body.error.details.fields[0].field).toBe('body.liquidity');
  });
});

describe('POST /funding', () => {
  let long: number;
  let short1: number;
  let short2: number;
  beforeAll(async () => {
    ok(await f.put('/markets/FUND-PERP', {}));
    await f.mark('FUND-PERP', 50000);
    long = f.freshAccount();
    short1 = f.freshAccount();
    short2 = f.freshAccount();
    for (const id of [long, short1, short2]) await f.deposit(id, 10000);
    ok(await f.trade(long, 'FUND-PERP', 'BUY', '0.2', 50000));
    ok(await f.trade(short1, 'FUND-PERP', 'SELL', '0.1', 50000));
    ok(await f.trade(short2, 'FUND-PERP', 'SELL', '0.1', 50000));
  });

  it('at a positive rate the long pays and the shorts receive q · m · r, one ledger row each', async () => {
    // Funding is charged at the current mark, not the entry.
    await f.mark('FUND-PERP', 50500);
    const answer = ok(await fund({ symbol: 'FUND-PERP', rate: '0.0001', funding_id: 'fund-1' }));
    // long 0.2 · 50500 · 0.0001 = 1.01; each short receives 0.1 · 50500 · 0.0001 = 0.505
    expect(answer).toEqual({ symbol: 'FUND-PERP', rate: '0.0001', funding_id: 'fund-1', mark_price: '50500', accounts: 3, paid: '1.01', received: '1.01', liquidated: [] });
    const rows = await fundingRows('fund-1');
    expect(rows.map((r) => [Number(r.account_id), r.amount, r.balance, r.symbol, r.price, r.position_quantity])).toEqual([
      [long, '-1.01', '9998.99', 'FUND-PERP', '50500', '0.2'],
      [short1, '0.505', '10000.505', 'FUND-PERP', '50500', '-0.1'],
      [short2, '0.505', '10000.505', 'FUND-PERP', '50500', '-0.1'],
    ]);
    expect(rows.every((r) => r.actor === 'admin-env')).toBe(true);
    expect(ok(await f.get(`/positions/${long}`)).balance).toBe('9998.99');
    expect(ok(await f.get(`/positions/${short1}`)).balance).toBe('10000.505');
  });

  it('at a negative rate the shorts pay and the long receives', async () => {
    const answer = ok(await fund({ symbol: 'FUND-PERP', rate: -0.0002, funding_id: 'fund-2' }));
    // long receives 0.2 · 50500 · 0.0002 = 2.02; each short pays 1.01
    expect(answer).toMatchObject({ accounts: 3, paid: '2.02', received: '2.02', rate: '-0.0002' });
    const rows = await fundingRows('fund-2');
    expect(rows.map((r) => [Number(r.account_id), r.amount, r.balance])).toEqual([
      [long, '2.02', '10001.01'],
      [short1, '-1.01', '9999.495'],
      [short2, '-1.01', '9999.495'],
    ]);
  });

  it('is idempotent by funding_id: the first answer again, nothing booked; 409 for another rate or symbol', async () => {
    const before = (await fundingRows('fund-1')).length;
    const again = ok(await fund({ symbol: 'FUND-PERP', rate: '0.00010', funding_id: 'fund-1' }));
    expect(again).toEqual({ symbol: 'FUND-PERP', rate: '0.0001', funding_id: 'fund-1', mark_price: '50500', accounts: 3, paid: '1.01', received: '1.01', liquidated: [] });
    expect((await fundingRows('fund-1')).length).toBe(before);
    expect(ok(await f.get(`/positions/${long}`)).balance).toBe('10001.01');
    const otherRate = await fund({ symbol: 'FUND-PERP', rate: '0.0002', funding_id: 'fund-1' });
    expect(otherRate.status).toBe(409);
    expect(otherRate.body.error.code).toBe('FUNDING_CONFLICT');
    const otherSymbol = await fund({ symbol: 'FEE-PERP', rate: '0.0001', funding_id: 'fund-1' });
    expect(otherSymbol.status).toBe(409);
    expect(otherSymbol.body.error).toMatchObject({ code: 'FUNDING_CONFLICT', details: { funding_id: 'fund-1', symbol: 'FUND-PERP', rate: '0.0001' } });
  });

  it('records the event in the market history and on the event stream', async () => {
    const history = ok(await f.get('/markets/FUND-PERP/history')).events.filter((e: any) => e.type === 'funding');
    expect(history[history.length - 1]).toMatchObject({
      type: 'funding',
      price: '50500',
      changes: { funding_id: 'fund-1', rate: '0.0001', accounts: 3, paid: '1.01', received: '1.01', liquidated: [] },
      actor: 'admin-env',
    });
    const events = (await eventsAfter(f.db.sql, ORIGIN, 10_000)).map(toStreamEvent).filter((e) => e.type === 'funding');
    const data = events.map((e) => JSON.parse(e.text.split('\ndata: ')[1]!));
    expect(data[0]).toMatchObject({ symbol: 'FUND-PERP', funding_id: 'fund-1', rate: '0.0001', mark_price: '50500', accounts: 3, paid: '1.01', received: '1.01', liquidated: [] });
    expect(events[0]!.text).toContain('event: funding\n');
  });

  it('liquidates an account the payment puts under maintenance, before the answer', async () => {
    ok(await f.put('/markets/THIN-PERP', {}));
    await f.mark('THIN-PERP', 50000);
    const thin = f.freshAccount();
    const other = f.freshAccount();
    await f.deposit(thin, 2000);
    await f.deposit(other, 100000);
    ok(await f.trade(thin, 'THIN-PERP', 'BUY', '0.2', 50000)); // IM 2000 = equity, MM 1000
    ok(await f.trade(other, 'THIN-PERP', 'SELL', '0.2', 50000));
    // pays 0.2 · 50000 · 0.06 = 600 → equity 1400 ≥ 1000: not yet
    expect(ok(await fund({ symbol: 'THIN-PERP', rate: '0.06', funding_id: 'thin-1' })).liquidated).toEqual([]);
    // pays 600 more → equity 800 < 1000: liquidated
    const answer = ok(await fund({ symbol: 'THIN-PERP', rate: '0.06', funding_id: 'thin-2' }));
    expect(answer).toMatchObject({ accounts: 2, paid: '600', received: '600', liquidated: [thin] });
    const liq = ok(await f.get(`/liquidations?account_id=${thin}`)).liquidations;
    expect(liq).toHaveLength(1);
    expect(liq[0]).toMatchObject({ reason: 'funding', equity: '800', maintenance_margin: '1000' });
    expect(ok(await f.get(`/positions/${thin}`)).positions).toEqual([]);
  });

  it('refuses what it must: 404, 422 NO_MARK_PRICE, 403 for a trading key, 400s', async () => {
    expect((await fund({ symbol: 'NOPE-PERP', rate: '0.0001', funding_id: 'x-1' })).body.error.code).toBe('MARKET_NOT_FOUND');
    ok(await f.put('/markets/UNMARKED-PERP', {}));
    const noMark = await fund({ symbol: 'UNMARKED-PERP', rate: '0.0001', funding_id: 'x-2' });
    expect(noMark.status).toBe(422);
    expect(noMark.body.error).toMatchObject({ code: 'NO_MARK_PRICE', details: { symbol: 'UNMARKED-PERP' } });
    // a refused request does not take the id
    ok(await fund({ symbol: 'FUND-PERP', rate: '0', funding_id: 'x-2' }));

    const key = ok(await f.post('/admin/keys', { name: 'matching engine', role: 'trading' }), 201).key;
    const forbidden = await fund({ symbol: 'FUND-PERP', rate: '0.0001', funding_id: 'x-3' }, key);
    expect(forbidden.status).toBe(403);
    const operator = ok(await f.post('/admin/keys', { name: 'desk', role: 'operator' }), 201).key;
    expect(ok(await fund({ symbol: 'FUND-PERP', rate: '0.0001', funding_id: 'x-4' }, operator)).accounts).toBe(3);

    for (const [body, field] of [
      [{ symbol: 'FUND-PERP', rate: '1', funding_id: 'v' }, 'body.rate'],
      [{ symbol: 'FUND-PERP', rate: -1, funding_id: 'v' }, 'body.rate'],
      [{ symbol: 'FUND-PERP', rate: 'abc', funding_id: 'v' }, 'body.rate'],
      [{ symbol: 'FUND-PERP', rate: '0.0000000000000000001', funding_id: 'v' }, 'body.rate'],
      [{ symbol: 'FUND-PERP', rate: '0.1' }, 'body.funding_id'],
      [{ symbol: 'FUND-PERP', rate: '0.1', funding_id: 'has space' }, 'body.funding_id'],
      [{ rate: '0.1', funding_id: 'v' }, 'body.symbol'],
      [{ symbol: 'FUND-PERP', rate: '0.1', funding_id: 'v', extra: 1 }, 'body.extra'],
    ] as const) {
      const res = await fund(body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toBe('VALIDATION_ERROR');
      expect(res.body.error.details.fields.map((x: any) => x.field)).toContain(field);
    }
    expect(await fundingRows('v')).toEqual([]);
  });
});

/** mulberry32: a small seeded generator, so a failure can be replayed from its seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('property: the funding rows sum to paid and received, each row exactly −q · m · r', () => {
  it.each([1, 2, 3, 4, 5])('seed %i', async (seed) => {
    const r = rng(seed * 7919);
    const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
    const symbol = `PROP${seed}-PERP`;
    const mark = `${int(100, 90000)}.${String(int(0, 99)).padStart(2, '0')}`;
    await f.mark(symbol, mark);
    const holders = new Map<number, Dec>();
    for (let i = 0, n = int(3, 12); i < n; i++) {
      const id = f.freshAccount();
      await f.deposit(id, '100000000');
      const qty = new D(int(1, 500000)).div(1000);
      const side = r() < 0.5 ? 'BUY' : 'SELL';
      ok(await f.trade(id, symbol, side, qty.toString(), mark));
      holders.set(id, side === 'BUY' ? qty : qty.neg());
    }
    const rate = new D(int(-999999, 999999)).div(1e8); // within ±0.01
    const answer = ok(await fund({ symbol, rate: rate.toString(), funding_id: `prop-${seed}` }));
    const rows = await fundingRows(`prop-${seed}`);
    expect(rows).toHaveLength(holders.size);
    expect(answer.accounts).toBe(holders.size);
    let paid = new D(0);
    let received = new D(0);
    for (const row of rows) {
      const q = holders.get(Number(row.account_id))!;
      const amount = new D(row.amount);
      expect(amount.eq(q.times(mark).times(rate).neg()), `account ${row.account_id}`).toBe(true);
      if (amount.isNeg()) paid = paid.minus(amount);
      else received = received.plus(amount);
    }
    expect(answer.paid).toBe(paid.toString());
    expect(answer.received).toBe(received.toString());
    expect(new D(answer.paid).gte(0) && new D(answer.received).gte(0)).toBe(true);
  });
});
