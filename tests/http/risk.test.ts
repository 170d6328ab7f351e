/**
 * Venue-grade risk through the HTTP API on a real engine (real Redis and
 * PostgreSQL): tiered margin in GET /positions, partial liquidation on
 * ticks, the liquidation fee and the insurance fund, the flat account with a
 * negative balance, a tier change re-checking holders, and POST
 * /trade/preview.
 *
 * Each describe that reads the insurance fund's totals has an engine (and
 * so a fund) of its own; the others trade their own symbols and accounts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { D } from '../../src/domain/decimal.js';
import { reconcile } from '../../src/services/reconcile.js';
import { ADMIN_KEY, call, listMarkets, startTestEngine, type EngineFixture, type Res } from '../helpers/engine.js';

const ok = (res: Res) => {
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
};

async function keyFor(f: EngineFixture, role: string, accountIds?: number[]): Promise<string> {
  const res = await call(f.app, 'POST', '/admin/keys', { name: `${role}-key`, role, ...(accountIds ? { account_ids: accountIds } : {}) });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.key as string;
}

describe('partial liquidation on ticks', () => {
  let f: EngineFixture;
  beforeAll(async () => {
    f = await startTestEngine();
  });
  afterAll(async () => {
    await f?.close();
  });

  it('slices the position to restore maintenance (fee counted), records it, pays the fee into the fund, and slices again on the next tick', async () => {
    // One flat tier of 10 % / 5 %, partial mode, lots of 0.1, no buffer, a 1 % fee.
    ok(
      await f.put('/markets/PA-PERP', {
        tiers: [{ max_notional: null, initial_margin_rate: '0.1', maintenance_margin_rate: '0.05' }],
        liquidation_mode: 'partial',
        lot_size: '0.1',
        liquidation_buffer: '0',
        liquidation_fee_rate: '0.01',
      }),
    );
    await f.mark('PA-PERP', 100);
    const id = f.freshAccount();
    await f.deposit(id, 145);
    ok(await f.trade(id, 'PA-PERP', 'BUY', 10, 100));
    // At 90: equity 45 = maintenance 0.05·900: not liquidated.
    expect((await f.mark('PA-PERP', 90)).liquidated).toEqual([]);
    // At 89: equity 35 < 44.5. Keep 35 − 0.89·Δ ≥ 4.45·(10 − Δ): Δ ≥ 2.668… → 2.7 (2.6 leaves 32.686 < 32.93).
    expect((await f.mark('PA-PERP', 89)).liquidated).toEqual([id]);
    const [first] = ok(await f.get(`/liquidations?account_id=${id}`)).liquidations;
    expect(first).toMatchObject({
      reason: 'mark_price',
      mode: 'partial',
      equity: '35',
      maintenance_margin: '44.5',
      realised_pnl: '-29.7',
      fee: '2.403',
      shortfall: '0',
      bad_debt: '0',
      positions: [{ symbol: 'PA-PERP', quantity: '2.7', entry_price: '100', mark_price: '89' }],
      positions_left: [{ symbol: 'PA-PERP', quantity: '7.3', entry_price: '100' }],
    });
    const after = ok(await f.get(`/positions/${id}`));
    // 145 − 29.7 − 2.403; equity 112.897 − 80.3 = 32.597 ≥ maintenance 0.05·89·7.3 = 32.485
    expect(after).toMatchObject({ balance: '112.897', equity: '32.597', maintenance_margin: '32.485', status: 'margin_call' });
    expect(after.positions).toMatchObject([{ symbol: 'PA-PERP', quantity: '7.3', tier: 1 }]);
    // The fee is in the fund, as one movement.
    expect(ok(await f.get('/insurance-fund'))).toEqual({ balance: '2.403', fees_received: '2.403', deposits: '0', shortfalls_paid: '0', bad_debt: '0' });
    expect(ok(await f.get('/insurance-fund/history')).movements).toMatchObject([{ type: 'fee', amount: '2.403', balance: '2.403', account_id: id }]);
    // The account's ledger: the closing slice, then the fee row.
    const rows = await f.db.sql<{ kind: string; quantity: string | null; amount: string | null; position_quantity: string | null }[]>`
      SELECT kind, quantity::text, amount::text, position_quantity::text FROM ledger WHERE account_id = ${id} AND liquidation_id IS NOT NULL ORDER BY seq`;
    expect(rows.map((r) => [r.kind, r.quantity ?? r.amount, r.position_quantity])).toEqual([
      ['TRADE', '2.7', '7.3'],
      ['LIQUIDATION_FEE', '2.403', null],
    ]);
    // The next tick slices again: at 88 equity 25.297 < 32.12; 25.297 − 0.88·Δ ≥ 4.4·(7.3 − Δ) → Δ ≥ 1.938… → 2.
    expect((await f.mark('PA-PERP', 88)).liquidated).toEqual([id]);
    const [second] = ok(await f.get(`/liquidations?account_id=${id}`)).liquidations;
    expect(second).toMatchObject({ mode: 'partial', positions: [{ quantity: '2' }], positions_left: [{ quantity: '5.3' }] });
  });

  it('closes everything and records mode full when equity is not positive', async () => {
    ok(await f.put('/markets/PB-PERP', { tiers: [{ max_notional: null, initial_margin_rate: '0.1', maintenance_margin_rate: '0.05' }], liquidation_mode: 'partial' }));
    await f.mark('PB-PERP', 100);
    const id = f.freshAccount();
    await f.deposit(id, 100);
    ok(await f.trade(id, 'PB-PERP', 'BUY', 10, 100));
    // At 85: equity 100 − 150 = −50.
    expect((await f.mark('PB-PERP', 85)).liquidated).toEqual([id]);
    const [record] = ok(await f.get(`/liquidations?account_id=${id}`)).liquidations;
    expect(record).toMatchObject({ mode: 'full', shortfall: '50', positions_left: [] });
  });
});

describe('the insurance fund', () => {
  let f: EngineFixture;
  beforeAll(async () => {
    f = await startTestEngine();
  });
  afterAll(async () => {
    await f?.close();
  });

  it('takes treasury deposits, and answers 403 to a role that may not, 400 to a bad amount', async () => {
    const treasury = await keyFor(f, 'treasury');
    const trading = await keyFor(f, 'trading');
    expect(ok(await f.post('/insurance-fund/deposit', { amount: '60' }, treasury))).toMatchObject({ balance: '60', deposits: '60' });
    expect((await f.post('/insurance-fund/deposit', { amount: '10' }, trading)).status).toBe(403);
    const bad = await f.post('/insurance-fund/deposit', { amount: '-1' });
    expect([bad.status, bad.body.error.code]).toEqual([400, 'VALIDATION_ERROR']);
    ok(await f.post('/insurance-fund/deposit', { amount: '40' }));
    expect(ok(await f.get('/insurance-fund'))).toEqual({ balance: '100', fees_received: '0', deposits: '100', shortfalls_paid: '0', bad_debt: '0' });
    // An account key may read the fund, not its history.
    const accountKey = await keyFor(f, 'account', [999]);
    expect((await f.get('/insurance-fund', accountKey)).status).toBe(200);
    expect((await f.get('/insurance-fund/history', accountKey)).status).toBe(403);
  });

  it('pays the shortfalls of one tick in ascending account id; what it cannot pay is bad debt', async () => {
    await f.mark('FS-PERP', 10000);
    // Created in descending id order, to show the order is the ids', not the accounts' age.
    const high = 20;
    const low = 10;
    await f.deposit(high, 2050);
    await f.deposit(low, 2000);
    ok(await f.trade(high, 'FS-PERP', 'BUY', 1, 10000));
    ok(await f.trade(low, 'FS-PERP', 'BUY', 1, 10000));
    // At 7920: low's equity 2000 − 2080 = −80, high's 2050 − 2080 = −30.
    expect((await f.mark('FS-PERP', 7920)).liquidated).toEqual([low, high]);
    // The fund (100) pays low's 80 first, then 20 of high's 30: 10 is bad debt.
    expect(ok(await f.get('/insurance-fund'))).toEqual({ balance: '0', fees_received: '0', deposits: '100', shortfalls_paid: '100', bad_debt: '10' });
    expect(ok(await f.get(`/liquidations?account_id=${low}`)).liquidations[0]).toMatchObject({ shortfall: '80', bad_debt: '0' });
    expect(ok(await f.get(`/liquidations?account_id=${high}`)).liquidations[0]).toMatchObject({ shortfall: '30', bad_debt: '10' });
    const history = ok(await f.get('/insurance-fund/history?limit=2'));
    expect(history.movements).toMatchObject([
      { type: 'shortfall', account_id: high, amount: '20', shortfall: '30', bad_debt: '10', balance: '0' },
      { type: 'shortfall', account_id: low, amount: '80', shortfall: '80', bad_debt: '0', balance: '20' },
    ]);
    expect(history.next_cursor).not.toBeNull();
    const rest = ok(await f.get(`/insurance-fund/history?cursor=${history.next_cursor}`));
    expect(rest.movements.map((m: any) => [m.type, m.amount])).toEqual([
      ['deposit', '40'],
      ['deposit', '60'],
    ]);
    expect(rest.next_cursor).toBeNull();
    // Balances were reset to 0 either way.
    for (const id of [low, high]) expect(ok(await f.get(`/positions/${id}`)).balance).toBe('0');
    // The metrics count the bad debt (and the shortfalls) as they are settled.
    const metrics = await f.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${ADMIN_KEY}` } });
    expect(metrics.statusCode).toBe(200);
    expect(metrics.body).toMatch(/^margin_engine_bad_debt_total 10$/m);
    expect(metrics.body).toMatch(/^margin_engine_liquidation_shortfall_total 110$/m);
  });

  it('liquidates a flat account left with a negative balance by a reducing trade, and the fund covers it', async () => {
    ok(await f.post('/insurance-fund/deposit', { amount: '500' }));
    await listMarkets(f.app, 'FLAT-PERP'); // listed, no mark: no price band
    const id = f.freshAccount() + 100;
    await f.deposit(id, 100);
    ok(await f.trade(id, 'FLAT-PERP', 'SELL', 1, 100));
    // The reducing BUY at 250 realises −150: balance −50 with nothing open.
    const res = ok(await f.trade(id, 'FLAT-PERP', 'BUY', 1, 250));
    expect([res.balance, res.realised_pnl]).toEqual(['-50', '-150']);
    const [record] = ok(await f.get(`/liquidations?account_id=${id}`)).liquidations;
    expect(record).toMatchObject({ reason: 'trade', mode: 'full', positions: [], shortfall: '50', bad_debt: '0' });
    expect(ok(await f.get(`/positions/${id}`))).toMatchObject({ balance: '0', status: 'healthy' });
    // Nothing is left for the report to flag.
    const report = ok(await f.get('/margin-report?status=liquidatable&limit=1000'));
    expect(report.accounts_detail.map((a: any) => a.account_id)).not.toContain(id);
    expect(ok(await f.get('/insurance-fund')).balance).toBe('450');
  });

  it('reconciles clean, and reconcile names a fund whose balance disagrees with its movements', async () => {
    expect(await reconcile(f.engine)).toEqual([]);
    await f.db.sql`UPDATE insurance_fund SET balance = balance + 1`;
    try {
      expect(await reconcile(f.engine)).toEqual(['insurance fund: balance 451, its movements make 450']);
    } finally {
      await f.db.sql`UPDATE insurance_fund SET balance = balance - 1`;
    }
  });
});

describe('tiered margin', () => {
  let f: EngineFixture;
  beforeAll(async () => {
    f = await startTestEngine();
  });
  afterAll(async () => {
    await f?.close();
  });

  const TIERS = [
    { max_notional: '10000', initial_margin_rate: '0.02', maintenance_margin_rate: '0.01' },
    { max_notional: '50000', initial_margin_rate: '0.05', maintenance_margin_rate: '0.025' },
    { max_notional: null, initial_margin_rate: '0.1', maintenance_margin_rate: '0.05' },
  ];

  it('sizes margin by notional per position and shows tier, margins and liquidation price', async () => {
    ok(await f.put('/markets/TA-PERP', { tiers: TIERS }));
    await f.mark('TA-PERP', 20000);
    const id = f.freshAccount();
    await f.deposit(id, 4000);
    ok(await f.trade(id, 'TA-PERP', 'BUY', 2, 20000));
    const p = ok(await f.get(`/positions/${id}`));
    // N 40000, tier 2: IM 2000 − 300 = 1700, MM 1000 − 150 = 850.
    // Liquidation price: 2m − 36000 = 0.05m − 150 → m = 35850 / 1.95.
    expect(p).toMatchObject({ initial_margin: '1700', maintenance_margin: '850', status: 'healthy' });
    expect(p.positions).toEqual([
      expect.objectContaining({ tier: 2, initial_margin: '1700', maintenance_margin: '850', liquidation_price: '18384.615384615384615385' }),
    ]);
    // The index holds the same threshold: just above it nothing happens, just below the account is liquidated.
    expect((await f.mark('TA-PERP', '18384.62')).liquidated).toEqual([]);
    expect((await f.mark('TA-PERP', '18384.61')).liquidated).toEqual([id]);
  });

  it('lists the margin report riskiest first when positions sit in different tiers (positions beyond the first tier sorted exactly)', async () => {
    ok(
      await f.put('/markets/TR-PERP', {
        tiers: [
          { max_notional: '100', initial_margin_rate: '0.1', maintenance_margin_rate: '0.05' },
          { max_notional: '1000', initial_margin_rate: '0.2', maintenance_margin_rate: '0.1' },
          { max_notional: null, initial_margin_rate: '0.4', maintenance_margin_rate: '0.2' },
        ],
      }),
    );
    await f.mark('TR-PERP', 10);
    const ids: number[] = [];
    for (let i = 1; i <= 40; i++) {
      const id = 1000 + i;
      ids.push(id);
      const q = 1 + ((i * 7) % 60); // notional 10–600 at 10: first and second tier
      await f.deposit(id, String(q * 10 * (0.25 + ((i * 13) % 50) / 100)));
      ok(await f.trade(id, 'TR-PERP', i % 2 ? 'BUY' : 'SELL', q, String(10 - (i % 5) / 10)));
    }
    // A move makes utilisations differ between the tiers in ways no single threshold order follows.
    await f.mark('TR-PERP', '10.3');
    const report = ok(await f.get('/margin-report?limit=1000')).accounts_detail.filter((r: any) => ids.includes(r.account_id));
    expect(report).toHaveLength(ids.length);
    const util = (r: any) => (r.margin_utilisation_pct === null ? null : new D(r.margin_utilisation_pct));
    const expected = [...report].sort((a: any, b: any) => {
      const [ua, ub] = [util(a), util(b)];
      if (ua === null || ub === null) return ua === ub ? a.account_id - b.account_id : ua === null ? -1 : 1;
      return ub.cmp(ua) || a.account_id - b.account_id;
    });
    expect(report.map((r: any) => r.account_id)).toEqual(expected.map((r: any) => r.account_id));
    // Both tiers are in the book, and the figures are each account's own.
    const tiersSeen = new Set<number>();
    for (const id of ids.slice(0, 10)) {
      const p = ok(await f.get(`/positions/${id}`));
      tiersSeen.add(p.positions[0].tier);
      expect(report.find((r: any) => r.account_id === id).margin_utilisation_pct).toBe(p.margin_utilisation_pct);
    }
    expect([...tiersSeen].sort()).toEqual([1, 2]);
    // Paging five at a time gives the same order.
    const paged: number[] = [];
    let cursor: string | null = null;
    do {
      const page: any = ok(await f.get(`/margin-report?limit=5${cursor ? `&cursor=${cursor}` : ''}`));
      paged.push(...page.accounts_detail.map((r: any) => r.account_id).filter((id: number) => ids.includes(id)));
      cursor = page.next_cursor;
    } while (cursor !== null);
    expect(paged).toEqual(expected.map((r: any) => r.account_id));
  });

  it('filters margin calls across markets whose maintenance/initial ratios differ', async () => {
    // TC-PERP: 9 % / 10 %, so margin call only above 90 % utilisation; TD-PERP: the default 10 % / 20 % (above 50 %).
    ok(await f.put('/markets/TC-PERP', { tiers: [{ max_notional: null, initial_margin_rate: '0.1', maintenance_margin_rate: '0.09' }] }));
    await f.mark('TC-PERP', 100);
    await f.mark('TD-PERP', 100);
    const [healthy, call] = [f.freshAccount() + 500, f.freshAccount() + 500];
    await f.deposit(healthy, '11.25');
    ok(await f.trade(healthy, 'TC-PERP', 'BUY', 1, 100)); // utilisation 9 / 11.25 = 80 %: healthy (equity ≥ IM 10)
    await f.deposit(call, 20);
    ok(await f.trade(call, 'TD-PERP', 'BUY', 1, 100));
    await f.mark('TD-PERP', 96); // equity 16, MM 9.6: 60 %, below IM 19.2: margin call
    const all = ok(await f.get('/margin-report?limit=1000')).accounts_detail;
    expect(all.find((r: any) => r.account_id === healthy)).toMatchObject({ margin_utilisation_pct: '80', status: 'healthy' });
    expect(all.find((r: any) => r.account_id === call)).toMatchObject({ margin_utilisation_pct: '60', status: 'margin_call' });
    const calls = ok(await f.get('/margin-report?status=margin_call&limit=1000')).accounts_detail.map((r: any) => r.account_id);
    expect(calls).toContain(call);
    expect(calls).not.toContain(healthy);
  });

  it('re-checks a market\'s holders when its tiers change, and liquidates those the new tiers put under maintenance', async () => {
    await f.mark('TB-PERP', 100);
    const safe = f.freshAccount();
    const weak = f.freshAccount();
    await f.deposit(safe, 1000);
    await f.deposit(weak, 25);
    ok(await f.trade(safe, 'TB-PERP', 'BUY', 1, 100));
    ok(await f.trade(weak, 'TB-PERP', 'BUY', 1, 100)); // IM 20 ≤ 25; MM 10
    const res = ok(await f.put('/markets/TB-PERP', { tiers: [{ max_notional: null, initial_margin_rate: '0.5', maintenance_margin_rate: '0.3' }] }));
    expect(res.tiers).toHaveLength(1);
    const [record] = ok(await f.get(`/liquidations?account_id=${weak}`)).liquidations;
    expect(record).toMatchObject({ reason: 'market', maintenance_margin: '30', equity: '25' });
    expect(ok(await f.get(`/liquidations?account_id=${safe}`)).liquidations).toEqual([]);
    // The survivor's threshold moved with the tiers: 1000 + (m − 100) = 0.3·m → m < 0 never; so a crash does nothing.
    expect(ok(await f.get(`/positions/${safe}`)).positions[0].liquidation_price).toBeNull();
  });
});

describe('POST /trade/preview', () => {
  let f: EngineFixture;
  let id: number;
  beforeAll(async () => {
    f = await startTestEngine();
    await f.mark('PV-PERP', 100);
    id = f.freshAccount();
    await f.deposit(id, 100);
  });
  afterAll(async () => {
    await f?.close();
  });

  const ledgerRows = async () => (await f.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ledger`)[0]!.n;

  it('answers what POST /trade would book, and books nothing', async () => {
    const before = await ledgerRows();
    const preview = ok(await f.post('/trade/preview', { account_id: id, symbol: 'PV-PERP', side: 'BUY', quantity: 4, price: 100 }));
    expect(preview).toMatchObject({
      accepted: true,
      fee: '0',
      after: { balance: '100', equity: '100', initial_margin: '80', maintenance_margin: '40', available_margin: '20', status: 'healthy' },
    });
    // 100 + 4·(m − 100) = 0.1·4·m → 3.6·m = 300 → 83.33…
    expect(preview.after.positions).toEqual([
      expect.objectContaining({ symbol: 'PV-PERP', quantity: '4', tier: 1, liquidation_price: '83.333333333333333333' }),
    ]);
    expect(await ledgerRows()).toBe(before);
    // The trade itself agrees.
    const booked = ok(await f.trade(id, 'PV-PERP', 'BUY', 4, 100));
    expect(booked.equity).toBe(preview.after.equity);
    expect(ok(await f.get(`/positions/${id}`))).toEqual({ account_id: id, ...preview.after });
  });

  it('answers 200 with accepted false, the error and the account unchanged for a trade POST /trade would refuse', async () => {
    const current = ok(await f.get(`/positions/${id}`));
    const refused = ok(await f.post('/trade/preview', { account_id: id, symbol: 'PV-PERP', side: 'BUY', quantity: 10, price: 100 }));
    expect(refused).toMatchObject({ accepted: false, error: { code: 'INSUFFICIENT_MARGIN' } });
    const { account_id: accountId, ...figures } = current;
    expect(accountId).toBe(id);
    expect(refused.after).toEqual(figures);
    const unknown = ok(await f.post('/trade/preview', { account_id: id, symbol: 'NOPE-PERP', side: 'BUY', quantity: 1, price: 100 }));
    expect([unknown.accepted, unknown.error.code]).toEqual([false, 'MARKET_NOT_FOUND']);
    const band = ok(await f.post('/trade/preview', { account_id: id, symbol: 'PV-PERP', side: 'BUY', quantity: 0.1, price: 200 }));
    expect([band.accepted, band.error.code, band.error.details.max_price]).toEqual([false, 'PRICE_OUT_OF_BAND', '105']);
  });

  it('keeps 400, 401 and 403 as errors; an account key may preview its own accounts only', async () => {
    expect((await f.post('/trade/preview', { account_id: id, symbol: 'PV-PERP', side: 'HOLD', quantity: 1, price: 100 })).status).toBe(400);
    expect((await f.post('/trade/preview', { account_id: id, symbol: 'PV-PERP', side: 'BUY', quantity: 1, price: 100 }, null)).status).toBe(401);
    const own = await keyFor(f, 'account', [id]);
    expect((await f.post('/trade/preview', { account_id: id, symbol: 'PV-PERP', side: 'SELL', quantity: 1, price: 100 }, own)).status).toBe(200);
    expect((await f.post('/trade/preview', { account_id: id + 1, symbol: 'PV-PERP', side: 'SELL', quantity: 1, price: 100 }, own)).status).toBe(403);
    // ...and still may not trade.
    expect((await f.post('/trade', { account_id: id, symbol: 'PV-PERP', side: 'SELL', quantity: 1, price: 100 }, own)).status).toBe(403);
  });
});

describe('the margin report with accounts whose utilisations tie exactly', () => {
  let f: EngineFixture;
  beforeAll(async () => {
    f = await startTestEngine();
  });
  afterAll(async () => {
    await f?.close();
  });

  it('lists them in account id order, once each, across page boundaries', async () => {
    // Two longs with the same threshold, 26,976.66…, reached from different
    // quantities, entries and balances, so the same utilisation at any mark:
    // (18551.33 − 0.721·50009) / 0.721 = (12430.065 − 0.485·49908) / 0.485 = −24271.333…
    await f.mark('TIE-PERP', 50000);
    ok(await f.post('/accounts/1/deposit', { amount: '18551.33' }));
    ok(await f.trade(1, 'TIE-PERP', 'BUY', '0.721', 50009));
    ok(await f.post('/accounts/2/deposit', { amount: '12430.065' }));
    ok(await f.trade(2, 'TIE-PERP', 'BUY', '0.485', 49908));
    const [a, b] = [ok(await f.get('/positions/1')), ok(await f.get('/positions/2'))];
    expect(a.margin_utilisation_pct).toBe(b.margin_utilisation_pct);
    expect(a.positions[0].liquidation_price).toBe(b.positions[0].liquidation_price);
    const seen: number[] = [];
    let cursor: string | null = null;
    do {
      const page: any = ok(await f.get(`/margin-report?limit=1${cursor ? `&cursor=${cursor}` : ''}`));
      seen.push(...page.accounts_detail.map((r: any) => r.account_id));
      cursor = page.next_cursor;
    } while (cursor !== null);
    expect(seen).toEqual([1, 2]);
  });
});
