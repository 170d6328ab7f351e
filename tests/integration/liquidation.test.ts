/**
 * Liquidation through the HTTP API on a real engine (the contract liquidation,
 * §3 POST /mark-price, GET /liquidations), real Redis and PostgreSQL.
 *
 * Marks are global, so each test trades its own symbols (and its own
 * accounts): a tick in one test never touches another test's accounts.
 * Rates are the defaults: initial 20%, maintenance 10%.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { D } from '../../src/domain/decimal.js';
import { startEngine, startTestEngine, type EngineFixture, type Side, type TestEngine } from '../helpers/engine.js';
import { listen, send } from '../helpers/http.js';
import { sleep } from '../helpers/until.js';

let f: EngineFixture;
let base: string;
const freshAccount = () => f.freshAccount();

beforeAll(async () => {
  f = await startTestEngine();
  base = await f.listen();
});
afterAll(async () => {
  await f?.close();
});

const get = (url: string) => f.get(url);
const deposit = (id: number, amount: string | number) => f.deposit(id, amount);
const mustTrade = async (id: number, symbol: string, side: Side, quantity: string | number, price: string | number) => {
  const res = await f.trade(id, symbol, side, quantity, price);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
};
const mark = async (symbol: string, price: string | number): Promise<{ symbol: string; price: string; liquidated: number[] }> => f.mark(symbol, price);
const count = async (table: 'ledger' | 'liquidations', accountId?: number) =>
  accountId === undefined
    ? (await f.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ${f.db.sql(table)}`)[0]!.n
    : (await f.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ${f.db.sql(table)} WHERE account_id = ${accountId}`)[0]!.n;
const liquidationsOf = async (id: number) => (await get(`/liquidations?account_id=${id}`)).body.liquidations as any[];

describe('POST /mark-price liquidation', () => {
  it('closes a long at the mark when the mark falls below its threshold, and commits it before answering', async () => {
    const id = freshAccount();
    await mark('LA-PERP', 50000);
    await deposit(id, 14000);
    // BUY 1 @ 50000: notional 50000, initial margin 10000 ≤ 14000
    const open = await mustTrade(id, 'LA-PERP', 'BUY', 1, 50000);
    // threshold = (50000 − 14000) / 0.9 = 40000. At 39000: equity 14000 − 11000 = 3000 < maintenance 3900.
    const tick = await mark('LA-PERP', 39000);
    expect(tick).toEqual({ symbol: 'LA-PERP', price: '39000', liquidated: [id], sweep: 'complete' });

    // Committed in PostgreSQL by the time the response arrived.
    const [record] = await f.db.sql`SELECT * FROM liquidations WHERE account_id = ${id}`;
    expect(record).toMatchObject({
      reason: 'mark_price',
      trigger_symbol: 'LA-PERP',
      trigger_price: '39000',
      equity: '3000',
      maintenance_margin: '3900',
      realised_pnl: '-11000',
      shortfall: '0',
    });
    const ledger = await f.db.sql`SELECT seq, kind, side, quantity, price, realised_pnl, liquidation_id, position_quantity, balance
                                FROM ledger WHERE account_id = ${id} ORDER BY seq`;
    // deposit, the BUY, then the closing SELL 1 @ 39000: realised 1·(39000 − 50000) = −11000, balance 3000
    expect(ledger.map((r) => r.kind)).toEqual(['DEPOSIT', 'TRADE', 'TRADE']);
    expect(ledger[2]).toMatchObject({ side: 'SELL', quantity: '1', price: '39000', realised_pnl: '-11000', position_quantity: '0', balance: '3000' });
    expect(Number(ledger[2]!.liquidation_id)).toBe(Number(record!.liquidation_id));
    expect(ledger[1]!.liquidation_id).toBeNull();
    expect([Number(record!.first_seq), Number(record!.last_seq)]).toEqual([3, 3]);

    const positions = await get(`/positions/${id}`);
    expect(positions.body).toMatchObject({ balance: '3000', equity: '3000', notional: '0', positions: [], status: 'healthy' });

    const trades = (await get(`/trades/${id}`)).body.trades;
    expect(trades).toHaveLength(2);
    expect(trades[0]).toMatchObject({ side: 'SELL', quantity: '1', price: '39000', realised_pnl: '-11000', liquidation_id: Number(record!.liquidation_id) });
    expect(trades[1]).toMatchObject({ trade_id: open.trade_id, side: 'BUY', liquidation_id: null });

    expect(await get(`/liquidations?account_id=${id}`)).toEqual({
      status: 200,
      body: {
        liquidations: [
          {
            liquidation_id: Number(record!.liquidation_id),
            account_id: id,
            reason: 'mark_price',
            mode: 'full',
            equity: '3000',
            maintenance_margin: '3900',
            realised_pnl: '-11000',
            shortfall: '0',
            fee: '0',
            bad_debt: '0',
            positions: [{ symbol: 'LA-PERP', quantity: '1', entry_price: '50000', mark_price: '39000' }],
            positions_left: [],
            actor: 'admin-env',
            created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
          },
        ],
        next_cursor: null,
      },
    });
  });

  it('closes a short at the mark when the mark rises above its threshold', async () => {
    const id = freshAccount();
    await mark('SA-PERP', 3000);
    await deposit(id, 850);
    // SELL 1 @ 3000: initial margin 600 ≤ 850. threshold = (−3000 − 850) / (−1.1) = 3500
    await mustTrade(id, 'SA-PERP', 'SELL', 1, 3000);
    // 3400: equity 850 − 400 = 450 ≥ maintenance 340 → untouched
    expect((await mark('SA-PERP', 3400)).liquidated).toEqual([]);
    // 3600: equity 850 − 600 = 250 < maintenance 360 → BUY 1 @ 3600, realised −600, balance 250
    expect((await mark('SA-PERP', 3600)).liquidated).toEqual([id]);
    const [liq] = await liquidationsOf(id);
    expect(liq).toMatchObject({
      account_id: id,
      reason: 'mark_price',
      equity: '250',
      maintenance_margin: '360',
      realised_pnl: '-600',
      shortfall: '0',
      positions: [{ symbol: 'SA-PERP', quantity: '-1', entry_price: '3000', mark_price: '3600' }],
    });
    const [closing] = (await get(`/trades/${id}?limit=1`)).body.trades;
    expect(closing).toMatchObject({ side: 'BUY', quantity: '1', price: '3600', realised_pnl: '-600', liquidation_id: liq.liquidation_id });
    expect((await get(`/positions/${id}`)).body).toMatchObject({ balance: '250', positions: [] });
  });

  it('values the other symbols of a cross-margin account at their own marks and closes them all in one record', async () => {
    const id = freshAccount();
    await mark('XB-PERP', 50000);
    await mark('XE-PERP', 3000);
    await deposit(id, 19254);
    await mustTrade(id, 'XB-PERP', 'BUY', 1, 50000); // initial margin 10000
    await mustTrade(id, 'XE-PERP', 'SELL', 10, 3000); // notional 80000, initial margin 16000 ≤ 19254
    // XB to 45000: equity 19254 − 5000 = 14254, maintenance 0.1·(45000 + 30000) = 7500 → untouched
    expect((await mark('XB-PERP', 45000)).liquidated).toEqual([]);
    // XE's threshold with XB at 45000: C = 19254 + (−5000 − 4500) = 9754; (−30000 − 9754) / (−11) = 3614.
    // XE at 3614: equity 19254 − 5000 − 6140 = 8114 = maintenance 0.1·(45000 + 36140) → exactly at maintenance, kept.
    expect((await mark('XE-PERP', 3614)).liquidated).toEqual([]);
    expect((await get(`/positions/${id}`)).body).toMatchObject({ equity: '8114', maintenance_margin: '8114', status: 'margin_call' });
    // XE at 3615: equity 19254 − 5000 − 6150 = 8104 < maintenance 0.1·(45000 + 36150) = 8115 → liquidated.
    // (Valued at its entry 50000 instead of its mark, XB would leave equity 13104 ≥ 8615: no liquidation.)
    expect((await mark('XE-PERP', 3615)).liquidated).toEqual([id]);

    const liqs = await liquidationsOf(id);
    expect(liqs).toHaveLength(1);
    // SELL 1 XB @ 45000 (−5000) and BUY 10 XE @ 3615 (−6150): realised −11150, balance 19254 − 11150 = 8104
    expect(liqs[0]).toMatchObject({
      reason: 'mark_price',
      equity: '8104',
      maintenance_margin: '8115',
      realised_pnl: '-11150',
      shortfall: '0',
      positions: [
        { symbol: 'XB-PERP', quantity: '1', entry_price: '50000', mark_price: '45000' },
        { symbol: 'XE-PERP', quantity: '-10', entry_price: '3000', mark_price: '3615' },
      ],
    });
    const closing = (await get(`/trades/${id}`)).body.trades.filter((x: any) => x.liquidation_id !== null);
    expect(closing.map((x: any) => [x.symbol, x.side, x.quantity, x.price, x.realised_pnl, x.liquidation_id]).sort()).toEqual([
      ['XB-PERP', 'SELL', '1', '45000', '-5000', liqs[0].liquidation_id],
      ['XE-PERP', 'BUY', '10', '3615', '-6150', liqs[0].liquidation_id],
    ]);
    expect((await get(`/positions/${id}`)).body).toMatchObject({ balance: '8104', equity: '8104', positions: [] });
  });

  it('sets a bankrupt balance to 0, records the deficit as shortfall and books the insurance fund', async () => {
    const id = freshAccount();
    await mark('BK-PERP', 50000);
    await deposit(id, 10000);
    await mustTrade(id, 'BK-PERP', 'BUY', 1, 50000); // initial margin 10000 = equity: accepted
    // The mark gaps from 50000 to 30000, far past the threshold (50000 − 10000) / 0.9 = 44444.44…:
    //   equity = 10000 − 20000 = −10000 < maintenance 3000
    //   SELL 1 @ 30000 realises −20000 → balance −10000 → set to 0; shortfall = deficit = 10000
    expect((await mark('BK-PERP', 30000)).liquidated).toEqual([id]);
    const [liq] = await liquidationsOf(id);
    expect(liq).toMatchObject({ equity: '-10000', maintenance_margin: '3000', realised_pnl: '-20000', shortfall: '10000' });
    const rows = await f.db.sql`SELECT kind, amount, balance, liquidation_id FROM ledger WHERE account_id = ${id} ORDER BY seq`;
    expect(rows.map((r) => [r.kind, r.balance])).toEqual([
      ['DEPOSIT', '10000'],
      ['TRADE', '10000'],
      ['TRADE', '-10000'], // the closing SELL
      ['INSURANCE', '0'], // the fund covers the deficit
    ]);
    expect(rows[3]!.amount).toBe('10000');
    expect((await get(`/positions/${id}`)).body).toMatchObject({ balance: '0', equity: '0', positions: [] });
  });

  it('does not liquidate exactly at maintenance, and does one unit further', async () => {
    const id = freshAccount();
    await mark('EX-PERP', 50000);
    await deposit(id, 14000);
    await mustTrade(id, 'EX-PERP', 'BUY', 1, 50000);
    // 40000: equity 14000 − 10000 = 4000 = maintenance 0.1·40000 → not liquidatable
    expect((await mark('EX-PERP', 40000)).liquidated).toEqual([]);
    expect((await get(`/positions/${id}`)).body).toMatchObject({ equity: '4000', maintenance_margin: '4000', status: 'margin_call' });
    expect(await count('liquidations', id)).toBe(0);
    // 39999: equity 3999 < maintenance 3999.9
    expect((await mark('EX-PERP', 39999)).liquidated).toEqual([id]);
    expect(await liquidationsOf(id)).toMatchObject([{ equity: '3999', maintenance_margin: '3999.9', realised_pnl: '-10001', shortfall: '0' }]);
  });

  it('does not liquidate twice: a second identical tick books nothing and creates no second record', async () => {
    const id = freshAccount();
    await mark('TW-PERP', 50000);
    await deposit(id, 14000);
    await mustTrade(id, 'TW-PERP', 'BUY', 1, 50000);
    expect((await mark('TW-PERP', 39000)).liquidated).toEqual([id]);
    const ledgerRows = await count('ledger', id);
    expect(await count('liquidations', id)).toBe(1);
    expect((await mark('TW-PERP', 39000)).liquidated).toEqual([]);
    expect((await mark('TW-PERP', 30000)).liquidated).toEqual([]); // flat: nothing left to liquidate
    expect(await count('liquidations', id)).toBe(1);
    expect(await count('ledger', id)).toBe(ledgerRows);
    expect((await get(`/positions/${id}`)).body).toMatchObject({ balance: '3000', positions: [] });
  });

  it('leaves accounts that are not endangered untouched: 50 healthy, 3 endangered, only the 3 liquidated', async () => {
    const symbol = 'HE-PERP';
    await mark(symbol, 100);
    const healthy = Array.from({ length: 50 }, freshAccount);
    const endangered = Array.from({ length: 3 }, freshAccount);
    // healthy longs: 10 @ 100 on 1000 → threshold (1000 − 1000) / 9 = 0
    // healthy shorts: 10 @ 100 on 1000 → threshold (−1000 − 1000) / (−11) = 181.81…
    // endangered longs: 40 @ 100 on 1000 → threshold (4000 − 1000) / 36 = 83.33…
    await Promise.all([...healthy, ...endangered].map((id) => deposit(id, 1000)));
    await Promise.all(healthy.map((id, i) => mustTrade(id, symbol, i % 2 ? 'SELL' : 'BUY', 10, 100)));
    await Promise.all(endangered.map((id) => mustTrade(id, symbol, 'BUY', 40, 100)));
    const before = await Promise.all(healthy.map(async (id) => (await get(`/positions/${id}`)).body));
    const ledgerBefore = await Promise.all(healthy.map((id) => count('ledger', id)));

    // 80: endangered equity 1000 − 800 = 200 < maintenance 320; healthy longs 800 ≥ 80, shorts 1200 ≥ 80
    expect((await mark(symbol, 80)).liquidated).toEqual([...endangered].sort((a, b) => a - b));

    for (const id of endangered) {
      expect((await get(`/positions/${id}`)).body).toMatchObject({ balance: '200', positions: [] });
      expect(await liquidationsOf(id)).toHaveLength(1);
    }
    const after = await Promise.all(healthy.map(async (id) => (await get(`/positions/${id}`)).body));
    after.forEach((view, i) => {
      expect(view.balance).toBe('1000');
      expect(view.positions.map((p: any) => [p.symbol, p.quantity, p.entry_price])).toEqual(
        before[i].positions.map((p: any) => [p.symbol, p.quantity, p.entry_price]),
      );
    });
    expect(await Promise.all(healthy.map((id) => count('ledger', id)))).toEqual(ledgerBefore);
    const [row] = await f.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM liquidations WHERE account_id = ANY(${healthy}::bigint[])`;
    expect(row!.n).toBe(0);
  });
});

describe('GET /liquidations', () => {
  it('pages newest first with a cursor, and filters by account', async () => {
    const symbol = 'PG-PERP';
    await mark(symbol, 100);
    const accounts = Array.from({ length: 3 }, freshAccount);
    // each long 10 @ 100 on 1000 − 100·i: thresholds (1000 − (1000 − 100·i)) / 9 = 0, 11.1…, 22.2…
    for (const [i, id] of accounts.entries()) {
      await deposit(id, 1000 - 100 * i);
      await mustTrade(id, symbol, 'BUY', 10, 100);
    }
    // Falling marks liquidate them one per tick, the last account first.
    expect((await mark(symbol, 20)).liquidated).toEqual([accounts[2]]);
    expect((await mark(symbol, 10)).liquidated).toEqual([accounts[1]]);
    await deposit(accounts[0]!, 1); // nothing to liquidate: threshold −0.11…, never
    expect((await mark(symbol, 1)).liquidated).toEqual([]);

    for (const id of accounts.slice(1)) {
      const res = await get(`/liquidations?account_id=${id}`);
      expect(res.body.liquidations.map((l: any) => l.account_id)).toEqual([id]);
      expect(res.body.next_cursor).toBeNull();
    }
    expect((await get(`/liquidations?account_id=${accounts[0]}`)).body).toEqual({ liquidations: [], next_cursor: null });

    // All of them, two a page.
    const seen: number[] = [];
    let cursor: string | null = null;
    for (let i = 0; i < 100; i++) {
      const res: { status: number; body: any } = await get(`/liquidations?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(res.status).toBe(200);
      expect(res.body.liquidations.length).toBeLessThanOrEqual(2);
      seen.push(...res.body.liquidations.map((l: any) => l.liquidation_id));
      cursor = res.body.next_cursor;
      if (cursor === null) break;
    }
    // Newest recorded first. Ids are taken when a liquidation starts, so one tick's concurrent liquidations
    // (several index shards, say) may be recorded out of id order: the order is the recording's.
    const recorded = await f.db.sql<{ id: string }[]>`SELECT liquidation_id AS id FROM liquidations ORDER BY record_seq DESC`;
    expect(seen).toEqual(recorded.map((r) => Number(r.id)));
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.length).toBe(await count('liquidations'));
    // the two just made are the newest: the one at 10 first, then the one at 20
    const newest = (await get('/liquidations?limit=2')).body.liquidations.map((l: any) => l.account_id);
    expect(newest).toEqual([accounts[1], accounts[2]]);
    expect((await get('/liquidations?limit=1001')).status).toBe(400);
  });
});

describe('polling', () => {
  it('GET /margin-report and GET /liquidations write nothing', async () => {
    // Some history to read first: one liquidation.
    const id = freshAccount();
    await mark('PO-PERP', 50000);
    await deposit(id, 14000);
    await mustTrade(id, 'PO-PERP', 'BUY', 1, 50000);
    expect((await mark('PO-PERP', 39000)).liquidated).toEqual([id]);

    const ledgerRows = await count('ledger');
    const records = await count('liquidations');
    const revs = () => Promise.all(f.keys.shards.map((k) => f.db.redis.get(k.rev)));
    const rev = await revs();
    for (let i = 0; i < 20; i++) {
      const [report, liqs, mine] = await Promise.all([get('/margin-report'), get('/liquidations'), get(`/liquidations?account_id=${id}`)]);
      expect([report.status, liqs.status, mine.status]).toEqual([200, 200, 200]);
      expect(mine.body.liquidations).toHaveLength(1);
    }
    expect(await count('ledger')).toBe(ledgerRows);
    expect(await count('liquidations')).toBe(records);
    expect(await revs()).toEqual(rev);
  });
});

describe('POST /trade and liquidation', () => {
  it('liquidates at once an account that a reduce-only trade leaves below maintenance (reason "trade")', async () => {
    const id = freshAccount();
    await mark('TR-PERP', 50000);
    // The reduce below is priced far from the mark on purpose: no trade price band on this market.
    expect((await f.put('/markets/TR-PERP', { trade_price_band: '0' })).status).toBe(200);
    await deposit(id, 10000);
    await mustTrade(id, 'TR-PERP', 'BUY', 1, 50000); // initial margin 10000 = equity
    // 45000: equity 5000 ≥ maintenance 4500 (margin call, not liquidated)
    expect((await mark('TR-PERP', 45000)).liquidated).toEqual([]);
    // SELL 0.1 @ 30000 only reduces, so it is accepted: realised 0.1·(30000 − 50000) = −2000, balance 8000.
    // Left: 0.9 @ 50000 at mark 45000 → equity 8000 − 4500 = 3500 < maintenance 0.9·45000·0.1 = 4050.
    const res = await mustTrade(id, 'TR-PERP', 'SELL', '0.1', 30000);
    expect(res).toMatchObject({ realised_pnl: '-2000', balance: '8000', position: { quantity: '0.9', entry_price: '50000' } });
    // By the time the trade answered, the rest was closed at the mark: SELL 0.9 @ 45000, realised −4500, balance 3500.
    expect(await liquidationsOf(id)).toMatchObject([
      {
        reason: 'trade',
        equity: '3500',
        maintenance_margin: '4050',
        realised_pnl: '-4500',
        shortfall: '0',
        positions: [{ symbol: 'TR-PERP', quantity: '0.9', entry_price: '50000', mark_price: '45000' }],
      },
    ]);
    expect((await get(`/positions/${id}`)).body).toMatchObject({ balance: '3500', positions: [] });
    const trades = (await get(`/trades/${id}`)).body.trades;
    expect(trades.map((x: any) => [x.side, x.quantity, x.price, x.liquidation_id === null])).toEqual([
      ['SELL', '0.9', '45000', false],
      ['SELL', '0.1', '30000', true],
      ['BUY', '1', '50000', true],
    ]);
  });

  it('lands a trade racing a tick wholly before the liquidation (closed by it) or wholly after (on the flat account)', async () => {
    const id = freshAccount();
    const symbol = 'RC-PERP';
    await mark(symbol, 50000);
    // Trades after the tick still come at 50000, far from the new mark: no trade price band on this market.
    expect((await f.put(`/markets/${symbol}`, { trade_price_band: '0' })).status).toBe(200);
    await deposit(id, 14000);
    await mustTrade(id, symbol, 'BUY', 1, 50000);
    // 40 BUYs of 0.01 @ 50000 fired over ~200 ms, the tick to 39000 early among them.
    // Whatever k of them land first, the tick liquidates: equity 14000 − 11000·(1 + 0.01k) < 3900·(1 + 0.01k).
    const trades = Array.from({ length: 40 }, async (_, i) => {
      await sleep(i * 5);
      return send(base, 'POST', '/trade', { account_id: id, symbol, side: 'BUY', quantity: '0.01', price: 50000 });
    });
    const tick = (async () => {
      await sleep(20);
      return send(base, 'POST', '/mark-price', { symbol, price: 39000 });
    })();
    const [tickRes, ...results] = await Promise.all([tick, ...trades]);
    expect(tickRes.status).toBe(200);
    expect(results.every((r) => r.status === 200 || r.status === 422)).toBe(true);
    const accepted = results.filter((r) => r.status === 200).map((r) => r.body);

    const liqs = await f.db.sql`SELECT * FROM liquidations WHERE account_id = ${id}`;
    // Liquidated exactly once. Usually by the tick itself; when a trade that read the old mark is booked
    // after the tick published the new one, that trade's own re-check may get there first (reason 'trade').
    expect(liqs).toHaveLength(1);
    const liq = liqs[0]!;
    expect([[], [id]]).toContainEqual(tickRes.body.liquidated);
    if (liq.reason === 'mark_price') expect(tickRes.body.liquidated).toEqual([id]);
    else expect(liq.reason).toBe('trade');
    const [first, last] = [Number(liq.first_seq), Number(liq.last_seq)];
    const rows = await f.db.sql`SELECT * FROM ledger WHERE account_id = ${id} ORDER BY seq`;
    const seqOf = new Map(rows.map((r) => [Number(r.entry_id), Number(r.seq)]));
    // The liquidation's rows are contiguous and all its own.
    for (const r of rows.filter((r) => Number(r.seq) >= first && Number(r.seq) <= last)) {
      expect(r.kind === 'INSURANCE' || Number(r.liquidation_id) === Number(liq.liquidation_id)).toBe(true);
    }
    const before = accepted.filter((b) => seqOf.get(b.trade_id)! < first);
    const after = accepted.filter((b) => seqOf.get(b.trade_id)! > last);
    expect(before.length + after.length).toBe(accepted.length); // none in between
    // Those before it were closed by it: it closed 1 + 0.01·(number before).
    const closed = new D(1).plus(new D('0.01').times(before.length));
    expect(new D((liq.positions as any[])[0].quantity).toString()).toBe(closed.toString());
    // Those after it opened on the flat account: what is held now is exactly them.
    const view = (await get(`/positions/${id}`)).body;
    const held = new D('0.01').times(after.length);
    expect(view.positions.length === 0 ? '0' : view.positions[0].quantity).toBe(held.toString());
    // Redis state equals what the ledger's last rows say.
    const lastRow = rows[rows.length - 1]!;
    expect(view.balance).toBe(new D(lastRow.balance).toString());
    const lastTrade = [...rows].reverse().find((r) => r.kind === 'TRADE')!;
    if (after.length > 0) {
      expect(lastTrade.liquidation_id).toBeNull();
      expect(view.positions).toMatchObject([{ quantity: new D(lastTrade.position_quantity).toString(), entry_price: new D(lastTrade.position_entry_price).toString() }]);
    } else {
      expect(new D(lastTrade.position_quantity).isZero()).toBe(true);
      expect(view.positions).toEqual([]);
    }
    // The ledger's balances replay: each row's balance = previous + realised PnL (trades), or 0 after the insurance row.
    let balance = new D(0);
    for (const r of rows) {
      if (r.kind === 'DEPOSIT') balance = balance.plus(r.amount);
      else if (r.kind === 'TRADE') balance = balance.plus(r.realised_pnl);
      else if (r.kind === 'INSURANCE') balance = balance.plus(r.amount);
      expect(balance.toString(), `seq ${r.seq}`).toBe(new D(r.balance).toString());
    }
    // The race really raced: trades landed on both sides of the liquidation.
    expect(before.length).toBeGreaterThan(0);
    expect(after.length).toBeGreaterThan(0);
  });
});

describe('several engine processes on one Redis and PostgreSQL', () => {
  // A second engine on the same Redis and PostgreSQL (as a second process would be): each takes one tick.
  let t2: TestEngine;
  let base2: string;
  beforeAll(async () => {
    t2 = await startEngine(f.iso);
    base2 = await listen(t2.app);
  });
  afterAll(async () => {
    await t2?.close();
  });

  it('liquidate cross-margin accounts that only two concurrent ticks on different symbols, together, put under maintenance', async () => {
    // Each account: long 1 B @ 50000, short 10 E @ 3000, cash 19254 (as in the cross-margin test above).
    //   B to 45000 alone (E at 3000): equity 19254 − 5000 = 14254 ≥ maintenance 7500
    //   E to 3615 alone (B at 50000): equity 19254 − 6150 = 13104 ≥ maintenance 0.1·(50000 + 36150) = 8615
    //   both:                         equity 19254 − 5000 − 6150 = 8104 < maintenance 0.1·(45000 + 36150) = 8115
    // Posted concurrently, the two ticks must between them liquidate every account.
    for (let round = 0; round < 5; round++) {
      const [b, e] = [`CB${round}-PERP`, `CE${round}-PERP`];
      await mark(b, 50000);
      await mark(e, 3000);
      const accounts = Array.from({ length: 10 }, freshAccount);
      await Promise.all(
        accounts.map(async (id) => {
          await deposit(id, 19254);
          await mustTrade(id, b, 'BUY', 1, 50000);
          await mustTrade(id, e, 'SELL', 10, 3000);
        }),
      );
      const [tb, te] = await Promise.all([
        send(base, 'POST', '/mark-price', { symbol: b, price: 45000 }),
        send(base2, 'POST', '/mark-price', { symbol: e, price: 3615 }),
      ]);
      expect([tb.status, te.status]).toEqual([200, 200]);
      const views = await Promise.all(accounts.map(async (id) => (await get(`/positions/${id}`)).body));
      expect(
        views.filter((v) => v.positions.length > 0).map((v) => [v.account_id, v.status]),
        `round ${round}: accounts left open after both ticks answered`,
      ).toEqual([]);
      expect([...tb.body.liquidated, ...te.body.liquidated].sort((x: number, y: number) => x - y)).toEqual(accounts);
      for (const v of views) expect(v).toMatchObject({ balance: '8104', positions: [] });
    }
  });
  it('list liquidations newest first, whichever process booked them', async () => {
    const symbol = 'NF-PERP';
    await mark(symbol, 100);
    const [x1, x2, x3] = Array.from({ length: 3 }, freshAccount);
    // each long 10 @ 100; threshold (1000 − cash) / 9:
    //   x1 on 800 → 22.2…,  x2 on 900 → 11.1…,  x3 on 950 → 5.5…
    for (const [id, cash] of [[x1!, 800], [x2!, 900], [x3!, 950]] as const) {
      await deposit(id, cash);
      await mustTrade(id, symbol, 'BUY', 10, 100);
    }
    const tick = async (via: string, price: number) => (await send(via, 'POST', '/mark-price', { symbol, price })).body.liquidated;
    // One after the other, alternating processes:
    expect(await tick(base, 20)).toEqual([x1]); // this engine: 20 < 22.2…
    expect(await tick(base2, 10)).toEqual([x2]); // the other: 10 < 11.1…
    expect(await tick(base, 5)).toEqual([x3]); // this engine again: 5 < 5.5…
    const rows = await f.db.sql`SELECT account_id FROM liquidations WHERE account_id = ANY(${[x1!, x2!, x3!]}::bigint[]) ORDER BY created_at DESC`;
    expect(rows.map((r) => Number(r.account_id))).toEqual([x3, x2, x1]); // booked x1, then x2, then x3
    // Newest first is x3, x2, x1.
    const listed = (await get('/liquidations?limit=1000')).body.liquidations.filter((l: any) => [x1, x2, x3].includes(l.account_id));
    expect(listed.map((l: any) => l.account_id)).toEqual([x3, x2, x1]);
    expect((await get('/liquidations?limit=1')).body.liquidations[0].account_id).toBe(x3);
  });
});
