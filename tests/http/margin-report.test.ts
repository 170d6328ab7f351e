/**
 * GET /margin-report: every account, riskiest first, paged, with
 * an ETag for cheap polling. Real engine, real Redis and PostgreSQL.
 *
 * The book (rates 20% / 10%), opened at marks AAA-PERP 100, BBB-PERP 10, then
 * marked AAA-PERP 90, BBB-PERP 11 (CCC-PERP never gets a mark):
 *
 *  id  position(s)                     cash  equity              notional        MM   utilisation = MM/equity·100   status
 *   1  long 10 AAA @100                1000  1000 − 100  =  900   900            90   10                            healthy
 *   2  long 40 AAA @100                1000  1000 − 400  =  600   3600           360  60                            margin_call (IM 720)
 *   3  short 20 AAA @100                500   500 + 200  =  700   1800           180  25.714285714285714286         healthy
 *   4  short 100 BBB @10                300   300 − 100  =  200   1100           110  55                            margin_call (IM 220)
 *   5  long 50 BBB @10                 1000  1000 + 50   = 1050   550            55   5.238095238095238095          healthy
 *   6  long 10 AAA @100,                700   700 − 100 − 100    900 + 1100      200  40                            healthy
 *      short 100 BBB @10                             =  500         = 2000
 *   7  flat                             500   500                 0              0    0                             healthy
 *   8  flat                             100   100                 0              0    0                             healthy
 *   9  long 1 CCC @1000 (no mark)      2000  2000                1000 (at entry) 100  5                             healthy
 *
 * Riskiest first: 2 (60), 4 (55), 6 (40), 3 (25.71…), 1 (10), 5 (5.238…), 9 (5), then 7 and 8 (0).
 */
import { defaultMarketParams } from '../../src/config.js';
import { D } from '../../src/domain/decimal.js';
import { MarkBook } from '../../src/store/mark-book.js';
import { reindexAccount } from '../../src/services/ledger-sync.js';
import { RiskKeys } from '../../src/store/risk-index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, listMarkets, startTestEngine, type EngineFixture, type Res, type Side } from '../helpers/engine.js';

let t: EngineFixture;

const get = (url: string) => t.get(url);
const expectOk = async (p: Promise<Res>) => {
  const res = await p;
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
};
const deposit = (id: number, amount: number) => t.deposit(id, amount);
const trade = (id: number, symbol: string, side: Side, quantity: number, price: number) => expectOk(t.trade(id, symbol, side, quantity, price));
const mark = (symbol: string, price: number) => t.mark(symbol, price);

const RISKIEST_FIRST = [2, 4, 6, 3, 1, 5, 9];
const FLAT = [7, 8];

const ROWS: Record<number, object> = {
  1: { account_id: 1, balance: '1000', equity: '900', notional: '900', initial_margin: '180', maintenance_margin: '90', margin_utilisation_pct: '10', status: 'healthy', liquidation_risk: false },
  2: { account_id: 2, balance: '1000', equity: '600', notional: '3600', initial_margin: '720', maintenance_margin: '360', margin_utilisation_pct: '60', status: 'margin_call', liquidation_risk: false },
  // 180 / 700 · 100 = 25.714285714285714285|714… → half-even at 18 places rounds up
  3: { account_id: 3, balance: '500', equity: '700', notional: '1800', initial_margin: '360', maintenance_margin: '180', margin_utilisation_pct: '25.714285714285714286', status: 'healthy', liquidation_risk: false },
  4: { account_id: 4, balance: '300', equity: '200', notional: '1100', initial_margin: '220', maintenance_margin: '110', margin_utilisation_pct: '55', status: 'margin_call', liquidation_risk: false },
  // 55 / 1050 · 100 = 5.238095238095238095|238… → rounds down
  5: { account_id: 5, balance: '1000', equity: '1050', notional: '550', initial_margin: '110', maintenance_margin: '55', margin_utilisation_pct: '5.238095238095238095', status: 'healthy', liquidation_risk: false },
  6: { account_id: 6, balance: '700', equity: '500', notional: '2000', initial_margin: '400', maintenance_margin: '200', margin_utilisation_pct: '40', status: 'healthy', liquidation_risk: false },
  7: { account_id: 7, balance: '500', equity: '500', notional: '0', initial_margin: '0', maintenance_margin: '0', margin_utilisation_pct: '0', status: 'healthy', liquidation_risk: false },
  8: { account_id: 8, balance: '100', equity: '100', notional: '0', initial_margin: '0', maintenance_margin: '0', margin_utilisation_pct: '0', status: 'healthy', liquidation_risk: false },
  9: { account_id: 9, balance: '2000', equity: '2000', notional: '1000', initial_margin: '200', maintenance_margin: '100', margin_utilisation_pct: '5', status: 'healthy', liquidation_risk: false },
};

const ids = (page: { accounts_detail: { account_id: number }[] }) => page.accounts_detail.map((r) => r.account_id);
/** The order the report must have: the ranked accounts, then the two flat ones (tied at 0) in either order. */
const expectRiskOrder = (got: number[], ranked: number[], tiedLast: number[]) => {
  expect(got.slice(0, ranked.length)).toEqual(ranked);
  expect([...got.slice(ranked.length)].sort((a, b) => a - b)).toEqual([...tiedLast].sort((a, b) => a - b));
};
const counts = async () => {
  const [l] = await t.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ledger`;
  const [q] = await t.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM liquidations`;
  return { ledger: l!.n, liquidations: q!.n };
};

beforeAll(async () => {
  t = await startTestEngine();
  await mark('AAA-PERP', 100);
  await mark('BBB-PERP', 10);
  await listMarkets(t.app, 'CCC-PERP'); // traded before its first mark
  for (const [id, cash] of [[1, 1000], [2, 1000], [3, 500], [4, 300], [5, 1000], [6, 700], [7, 500], [8, 100], [9, 2000]] as const) {
    await deposit(id, cash);
  }
  // Opened at the marks (no unrealised PnL yet); each passes initial margin:
  await trade(1, 'AAA-PERP', 'BUY', 10, 100); // IM 200 ≤ 1000
  await trade(2, 'AAA-PERP', 'BUY', 40, 100); // IM 800 ≤ 1000
  await trade(3, 'AAA-PERP', 'SELL', 20, 100); // IM 400 ≤ 500
  await trade(4, 'BBB-PERP', 'SELL', 100, 10); // IM 200 ≤ 300
  await trade(5, 'BBB-PERP', 'BUY', 50, 10); // IM 100 ≤ 1000
  await trade(6, 'AAA-PERP', 'BUY', 10, 100); // IM 200 ≤ 700
  await trade(6, 'BBB-PERP', 'SELL', 100, 10); // IM 400 ≤ 700
  await trade(9, 'CCC-PERP', 'BUY', 1, 1000); // no mark: valued at entry, IM 200 ≤ 2000
  // Nobody is endangered by these moves (lowest long threshold crossed: account 2's (4000 − 1000)/36 = 83.33 < 90).
  expect((await mark('AAA-PERP', 90)).liquidated).toEqual([]);
  expect((await mark('BBB-PERP', 11)).liquidated).toEqual([]);
});
afterAll(async () => {
  await t?.close();
});

describe('GET /margin-report', () => {
  it('lists every account riskiest first (highest utilisation), flat accounts (0) last', async () => {
    const res = await get('/margin-report');
    expect(res.status).toBe(200);
    expect(res.body.total_accounts).toBe(9);
    expect(res.body.next_cursor).toBeNull();
    expectRiskOrder(ids(res.body), RISKIEST_FIRST, FLAT);
  });

  it('reports each row with exact decimal strings', async () => {
    const res = await get('/margin-report');
    for (const row of res.body.accounts_detail) expect(row).toEqual(ROWS[row.account_id]);
    expect(res.body.accounts_detail).toHaveLength(9);
  });

  it('has no liquidation candidates and no liquidation risk when ticks have liquidated everyone under maintenance', async () => {
    // Ticks liquidate at once, so a liquidatable account never stays in the book for the report to show.
    const res = await get('/margin-report');
    expect(res.body.liquidation_candidates).toEqual([]);
    for (const row of res.body.accounts_detail) expect(row.liquidation_risk).toBe(row.status === 'liquidatable');
    expect(res.body.accounts_detail.some((r: any) => r.liquidation_risk)).toBe(false);
    expect((await get('/margin-report?status=liquidatable')).body).toEqual({ total_accounts: 9, liquidation_candidates: [], accounts_detail: [], next_cursor: null });
  });

  it('pages through everything with limit=2: each account exactly once, in order, null cursor on the last page', async () => {
    const seen: number[] = [];
    const sizes: number[] = [];
    let cursor: string | null = null;
    for (let pages = 0; pages < 20; pages++) {
      const res: { status: number; body: any } = await get(`/margin-report?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(res.status).toBe(200);
      expect(res.body.total_accounts).toBe(9);
      seen.push(...ids(res.body));
      sizes.push(res.body.accounts_detail.length);
      cursor = res.body.next_cursor;
      if (cursor === null) break;
      expect(cursor).toEqual(expect.any(String));
    }
    expect(sizes).toEqual([2, 2, 2, 2, 1]);
    expectRiskOrder(seen, RISKIEST_FIRST, FLAT);
    expect(new Set(seen).size).toBe(9);
  });

  it('rejects a limit above 1000 and a malformed cursor with 400', async () => {
    const res = await get('/margin-report?limit=1001');
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ success: false, error: { code: 'VALIDATION_ERROR' } });
    expect((await get('/margin-report?limit=1000')).status).toBe(200);
    expect((await get('/margin-report?limit=0')).status).toBe(400);
    expect((await get('/margin-report?cursor=not-a-cursor')).status).toBe(400);
  });

  it('filters by status, still counting every account in total_accounts', async () => {
    const calls = await get('/margin-report?status=margin_call');
    expect(calls.body).toMatchObject({ total_accounts: 9, liquidation_candidates: [], next_cursor: null });
    expect(ids(calls.body)).toEqual([2, 4]);
    expect(calls.body.accounts_detail).toEqual([ROWS[2], ROWS[4]]);

    const healthy = await get('/margin-report?status=healthy');
    expect(healthy.body.total_accounts).toBe(9);
    expectRiskOrder(ids(healthy.body), [6, 3, 1, 5, 9], FLAT);
    expect(healthy.body.accounts_detail.every((r: any) => r.status === 'healthy')).toBe(true);
  });

  it('pages a status filter too', async () => {
    const p1 = await get('/margin-report?status=healthy&limit=3');
    expect(ids(p1.body)).toEqual([6, 3, 1]);
    expect(p1.body.next_cursor).toEqual(expect.any(String));
    const p2 = await get(`/margin-report?status=healthy&limit=3&cursor=${p1.body.next_cursor}`);
    expect(p2.body.total_accounts).toBe(9);
    const p3 = await get(`/margin-report?status=healthy&limit=3&cursor=${p2.body.next_cursor}`);
    expect(p3.body.next_cursor).toBeNull();
    // 7 healthy accounts: 3 + 3 + 1
    expect([p1, p2, p3].map((p) => p.body.accounts_detail.length)).toEqual([3, 3, 1]);
    expectRiskOrder([...ids(p1.body), ...ids(p2.body), ...ids(p3.body)], [6, 3, 1, 5, 9], FLAT);
  });
});

describe('GET /margin-report ETag', () => {
  const raw = (headers: Record<string, string> = {}, url = '/margin-report') =>
    t.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${ADMIN_KEY}`, ...headers } });

  it('is the same while nothing changes, and answers 304 with an empty body to If-None-Match', async () => {
    const first = await raw();
    const etag = first.headers.etag as string;
    expect(etag).toEqual(expect.any(String));
    expect(etag.length).toBeGreaterThan(2);
    const again = await raw();
    expect(again.headers.etag).toBe(etag);
    expect(again.body).toBe(first.body);
    const notModified = await raw({ 'if-none-match': etag });
    expect(notModified.statusCode).toBe(304);
    expect(notModified.body).toBe('');
    // Another ETag is not a match.
    expect((await raw({ 'if-none-match': '"something-else"' })).statusCode).toBe(200);
  });

  it('changes after a trade, a deposit and a mark-price post', async () => {
    const changesAfter = async (what: () => Promise<unknown>) => {
      const before = (await raw()).headers.etag as string;
      await what();
      const after = await raw({ 'if-none-match': before });
      expect(after.statusCode).toBe(200);
      expect(after.headers.etag).not.toBe(before);
      return JSON.parse(after.body);
    };
    // account 1 buys 1 more AAA at 90: notional 990, equity 900, MM 99 → utilisation 11
    const afterTrade = await changesAfter(() => trade(1, 'AAA-PERP', 'BUY', 1, 90));
    expect(afterTrade.accounts_detail.find((r: any) => r.account_id === 1).margin_utilisation_pct).toBe('11');
    // account 8 deposits 1: balance 101
    const afterDeposit = await changesAfter(() => deposit(8, 1));
    expect(afterDeposit.accounts_detail.find((r: any) => r.account_id === 8).balance).toBe('101');
    // CCC gets its first mark, 1000 (account 9 unchanged in value, but the marks did change)
    await changesAfter(() => mark('CCC-PERP', 1000));
    // a new account appears
    const afterNew = await changesAfter(() => deposit(10, 5));
    expect(afterNew.total_accounts).toBe(10);
  });

  it('polling writes nothing: no ledger rows, no liquidation records, no change of ETag', async () => {
    const before = await counts();
    const etag = (await raw()).headers.etag as string;
    for (let i = 0; i < 25; i++) {
      const res = await raw();
      expect(res.statusCode).toBe(200);
      expect(res.headers.etag).toBe(etag);
      expect((await raw({ 'if-none-match': etag })).statusCode).toBe(304);
      expect((await raw({}, '/margin-report?limit=2')).statusCode).toBe(200);
      expect((await raw({}, '/margin-report?status=margin_call')).statusCode).toBe(200);
    }
    expect(await counts()).toEqual(before);
    expect((await raw()).headers.etag).toBe(etag);
  });
});

describe('GET /margin-report default page size', () => {
  it('returns 100 accounts when no limit is given, and the rest on the next page', async () => {
    // Flat accounts up to 105, however many the tests before this one opened.
    const have = (await get('/margin-report?limit=1')).body.total_accounts as number;
    await Promise.all(Array.from({ length: 105 - have }, (_, i) => deposit(1000 + i, 1)));
    const p1 = await get('/margin-report');
    expect(p1.body.total_accounts).toBe(105);
    expect(p1.body.accounts_detail).toHaveLength(100);
    expect(p1.body.next_cursor).toEqual(expect.any(String));
    const p2 = await get(`/margin-report?cursor=${p1.body.next_cursor}`);
    expect(p2.body.accounts_detail).toHaveLength(5);
    expect(p2.body.next_cursor).toBeNull();
    expect(new Set([...ids(p1.body), ...ids(p2.body)]).size).toBe(105);
  });
});

describe('GET /margin-report ordering is exact, not by binary floating point', () => {
  // Two longs whose thresholds differ by less than a double can tell apart:
  //   account 1: 1 @ 50000 on 14000                → threshold (50000 − 14000) / 0.9 = 40000
  //   account 2: 1 @ 50000 on 13999.9999999999991  → threshold (50000 − 13999.9999999999991) / 0.9 = 40000.000000000001
  // At a mark of 45000:
  //   account 1: equity 9000, maintenance 4500 → utilisation 50; initial 9000 ≤ equity → healthy
  //   account 2: equity 8999.9999999999991 → utilisation 450000 / 8999.9999999999991 = 50.000000000000005 (to 18 places);
  //              equity < initial 9000 → margin_call
  // Account 2 is the riskier one, and the only margin call.
  let tx: EngineFixture;
  beforeAll(async () => {
    tx = await startTestEngine();
    const p = (url: string, body: unknown) => expectOk(tx.post(url, body));
    await p('/mark-price', { symbol: 'P-PERP', price: 50000 });
    await p('/accounts/1/deposit', { amount: '14000' });
    await p('/accounts/2/deposit', { amount: '13999.9999999999991' });
    await p('/trade', { account_id: 1, symbol: 'P-PERP', side: 'BUY', quantity: 1, price: 50000 }); // IM 10000 ≤ 14000
    await p('/trade', { account_id: 2, symbol: 'P-PERP', side: 'BUY', quantity: 1, price: 50000 });
    expect((await p('/mark-price', { symbol: 'P-PERP', price: 45000 })).liquidated).toEqual([]);
  });
  afterAll(async () => {
    await tx?.close();
  });

  it('ranks the account with the higher exact utilisation first', async () => {
    const res = await tx.get('/margin-report');
    expect(res.body.accounts_detail.map((r: any) => [r.account_id, r.margin_utilisation_pct, r.status])).toEqual([
      [2, '50.000000000000005', 'margin_call'],
      [1, '50', 'healthy'],
    ]);
  });

  it('finds the margin call with ?status=margin_call', async () => {
    const res = await tx.get('/margin-report?status=margin_call');
    expect(res.body.total_accounts).toBe(2);
    expect(res.body.accounts_detail.map((r: any) => r.account_id)).toEqual([2]);
  });

  it('pages through a run of equal scores one account at a time, in exact order, each once', async () => {
    // Three more accounts on the same double score as account 1 (threshold exactly 40000):
    // utilisation 50 each, tied with account 1, so they follow account 2 in id order.
    // They open at 50000 with the mark at 45000: outside the default trade price band, so it is off for P-PERP.
    await expectOk(tx.put('/markets/P-PERP', { trade_price_band: '0' }));
    for (const id of [3, 4, 5]) {
      await expectOk(tx.post(`/accounts/${id}/deposit`, { amount: '14000' }));
      await expectOk(tx.post('/trade', { account_id: id, symbol: 'P-PERP', side: 'BUY', quantity: 1, price: 50000 }));
    }
    await expectOk(tx.post('/mark-price', { symbol: 'P-PERP', price: 45000 }));
    const seen: number[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 10; page++) {
      const res = await tx.get(`/margin-report?limit=1${cursor ? `&cursor=${cursor}` : ''}`);
      seen.push(...res.body.accounts_detail.map((r: any) => r.account_id));
      cursor = res.body.next_cursor;
      if (!cursor) break;
    }
    expect(seen).toEqual([2, 1, 3, 4, 5]);
  });
});

describe('GET /margin-report with utilisation null (equity ≤ 0 with positions)', () => {
  // With a maintenance rate of 0, maintenance margin is 0 and an account is liquidatable only when
  // equity < 0: one at equity exactly 0 keeps its position and has a null utilisation.
  let t0: EngineFixture;
  beforeAll(async () => {
    t0 = await startTestEngine({ env: { MAINTENANCE_MARGIN_RATE: '0' } });
  });
  afterAll(async () => {
    await t0?.close();
  });

  it('ranks it riskiest of all', async () => {
    const p = (url: string, body: unknown) => expectOk(t0.post(url, body));
    await p('/mark-price', { symbol: 'Z-PERP', price: 100 });
    await p('/accounts/1/deposit', { amount: 1000 });
    await p('/accounts/2/deposit', { amount: 50 });
    await p('/accounts/3/deposit', { amount: 500 });
    await p('/trade', { account_id: 1, symbol: 'Z-PERP', side: 'BUY', quantity: 10, price: 100 }); // IM 200 ≤ 1000
    await p('/trade', { account_id: 3, symbol: 'Z-PERP', side: 'BUY', quantity: 10, price: 100 }); // IM 200 ≤ 500
    // Z to 50: account 3's equity = 500 + 10·(50 − 100) = 0, not < maintenance 0 → kept.
    // Account 1: equity 500, utilisation 0 / 500 = 0. Account 2: flat, 0.
    expect((await p('/mark-price', { symbol: 'Z-PERP', price: 50 })).liquidated).toEqual([]);
    const res = await t0.get('/margin-report');
    expect(res.status).toBe(200);
    expect(res.body.accounts_detail[0]).toEqual({
      account_id: 3,
      balance: '500',
      equity: '0',
      notional: '500',
      initial_margin: '100',
      maintenance_margin: '0',
      margin_utilisation_pct: null,
      status: 'margin_call', // maintenance 0 ≤ equity 0 < initial 100
      liquidation_risk: false,
    });
    expect(ids(res.body).slice(1).sort()).toEqual([1, 2]);
    expect(res.body.total_accounts).toBe(3);
    expect(res.body.liquidation_candidates).toEqual([]);
    // and it pages first too
    const first = await t0.get('/margin-report?limit=1');
    expect(ids(first.body)).toEqual([3]);
  });

  it('pages one account at a time in exact order: every utilisation is 0 or null, so ties go by account id', async () => {
    const p = (url: string, body: unknown) => expectOk(t0.post(url, body));
    await p('/accounts/5/deposit', { amount: 1000 });
    await p('/accounts/4/deposit', { amount: 300 });
    await p('/trade', { account_id: 5, symbol: 'Z-PERP', side: 'BUY', quantity: 5, price: 50 });
    await p('/trade', { account_id: 4, symbol: 'Z-PERP', side: 'SELL', quantity: 2, price: 50 });
    const seen: number[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 10; page++) {
      const res: Res = await t0.get(`/margin-report?limit=1${cursor ? `&cursor=${cursor}` : ''}`);
      seen.push(...ids(res.body));
      cursor = res.body.next_cursor;
      if (!cursor) break;
    }
    expect(seen).toEqual([3, 1, 2, 4, 5]);
  });
});

describe('GET /margin-report through a run of equal scores longer than it sorts whole', () => {
  // 1,100 identical longs (1 @ 50000 on 14000: threshold 40000 each) form one run of
  // equal index scores, longer than the 1,024 the report reads whole; it is served in
  // id order, which is the exact order here (equal utilisation, ties by account id).
  let tl: EngineFixture;
  const N = 1100;
  beforeAll(async () => {
    tl = await startTestEngine();
    await expectOk(tl.post('/mark-price', { symbol: 'R-PERP', price: 50000 }));
    const ids = Array.from({ length: N }, (_, i) => i + 1);
    for (let i = 0; i < ids.length; i += 100) {
      await Promise.all(
        ids.slice(i, i + 100).map(async (id) => {
          await expectOk(tl.post(`/accounts/${id}/deposit`, { amount: '14000' }));
          await expectOk(tl.post('/trade', { account_id: id, symbol: 'R-PERP', side: 'BUY', quantity: 1, price: 50000 }));
        }),
      );
    }
  }, 120_000);
  afterAll(async () => {
    await tl?.close();
  });

  it('pages through it in id order, every account once, with page boundaries inside the run', async () => {
    const seen: number[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 20; page++) {
      const res = await tl.get(`/margin-report?limit=300${cursor ? `&cursor=${cursor}` : ''}`);
      expect(res.status).toBe(200);
      seen.push(...res.body.accounts_detail.map((r: any) => r.account_id));
      cursor = res.body.next_cursor;
      if (!cursor) break;
    }
    expect(seen).toEqual(Array.from({ length: N }, (_, i) => i + 1));
  });
});

describe('GET /margin-report liquidation candidates', () => {
  // Between a change and the liquidation it triggers, an account can be liquidatable.
  // The test makes one directly in Redis (the balance of account 2 drops to 1):
  //   account 2: long 1 @ 50000 at mark 50000, balance 1 → equity 1 < maintenance 5000.
  let tc: EngineFixture;
  beforeAll(async () => {
    tc = await startTestEngine();
    await expectOk(tc.post('/mark-price', { symbol: 'C-PERP', price: 50000 }));
    for (const id of [1, 2, 3]) {
      await expectOk(tc.post(`/accounts/${id}/deposit`, { amount: '20000' }));
      await expectOk(tc.post('/trade', { account_id: id, symbol: 'C-PERP', side: id === 3 ? 'SELL' : 'BUY', quantity: 1, price: 50000 }));
    }
    await tc.db.redis.hset(tc.keys.account(2).state, 'bal', '1');
    // ...and its index entry, as the write that changed it would have (threshold (50000 − 1) / 0.9)
    const { engine, config } = tc;
    const defaults = defaultMarketParams(config);
    await reindexAccount(engine.redis, engine.keys, new RiskKeys(engine.keys), new MarkBook(engine.redis, engine.keys, defaults), defaults, 2, []);
  });
  afterAll(async () => {
    await tc?.close();
  });

  it('lists a liquidatable account as a candidate, first, with liquidation_risk', async () => {
    const res = await tc.get('/margin-report');
    expect(res.body.liquidation_candidates).toEqual([2]);
    // utilisation 5000 / 1 · 100 = 500000
    expect(res.body.accounts_detail[0]).toMatchObject({ account_id: 2, status: 'liquidatable', liquidation_risk: true, margin_utilisation_pct: '500000' });
    expect(res.body.accounts_detail.slice(1).every((r: any) => r.liquidation_risk === false)).toBe(true);
    const filtered = await tc.get('/margin-report?status=liquidatable');
    expect(filtered.body.accounts_detail.map((r: any) => r.account_id)).toEqual([2]);
  });

  it('shows a change made after the previous read (nothing stale is served between pages)', async () => {
    const before = await tc.get('/margin-report');
    const row = (body: any, id: number) => body.accounts_detail.find((r: any) => r.account_id === id);
    expect(row(before.body, 3).balance).toBe('20000');
    await expectOk(tc.post('/accounts/3/deposit', { amount: '5' }));
    const after = await tc.get('/margin-report');
    expect(row(after.body, 3).balance).toBe('20005');
  });
});

describe('GET /margin-report across 300 markets, paged to the end', () => {
  // 300 marked symbols S000-PERP … S299-PERP, opened at 100, then marked 99 (even) or 101 (odd). Per symbol i:
  //   account 2i+1: long 2 @ 100, deposit 41 when i ≡ 0 (mod 10) (equity 39 < IM 39.6 at 99: margin call), else 200 + 10·(7i mod 50);
  //   account 2i+2: short 1.5 @ 100, deposit 150 + 10·(11i mod 40).
  // Deposits repeat across symbols, so many accounts on different lists share a utilisation (tied, then by id).
  // Also: accounts 1001–1020 long one symbol and short the next; 1100 holds U-PERP, which has no mark; 2001–2030 are flat.
  let tm: EngineFixture;
  const SYMBOLS = 300;
  const TOTAL = 2 * SYMBOLS + 20 + 1 + 30;
  const sym = (i: number) => `S${String(i).padStart(3, '0')}-PERP`;
  const inBatches = async <T>(items: T[], f: (item: T) => Promise<unknown>) => {
    for (let i = 0; i < items.length; i += 50) await Promise.all(items.slice(i, i + 50).map(f));
  };
  const symbols = Array.from({ length: SYMBOLS }, (_, i) => i);
  type Row = { account_id: number; margin_utilisation_pct: string | null; status: string };
  /** Every page from the first to next_cursor null; the rows in order and the cursors. */
  const walk = async (query: string) => {
    const rows: Row[] = [];
    const cursors: string[] = [];
    let cursor: string | null = null;
    for (let pages = 0; pages < 1000; pages++) {
      const res: Res = await tm.get(`/margin-report?${query}${cursor ? `&cursor=${cursor}` : ''}`);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body.total_accounts).toBe(TOTAL);
      rows.push(...res.body.accounts_detail);
      cursor = res.body.next_cursor;
      if (cursor === null) return { rows, cursors };
      cursors.push(cursor);
    }
    throw new Error('the report did not end');
  };
  /** The report's order, computed here: null utilisation first, then utilisation descending, then account id. */
  const inOrder = (a: Row, b: Row) => {
    const [ua, ub] = [a.margin_utilisation_pct, b.margin_utilisation_pct];
    if (ua === null || ub === null) return ua === ub ? a.account_id < b.account_id : ua === null;
    const c = new D(ua).cmp(ub);
    return c > 0 || (c === 0 && a.account_id < b.account_id);
  };

  beforeAll(async () => {
    // A page seeks every list of every market in every shard: 600 reads on one node, 9,600 on the
    // 16-shard test cluster, which outlast the default 800 ms store deadline there. This block is about
    // the paging being right; the report's latency is the benchmark's business (docs/benchmarks.md).
    const sharded = process.env.TEST_REDIS_CLUSTER !== undefined || process.env.TEST_REDIS_SHARDS !== undefined;
    tm = await startTestEngine(sharded ? { env: { DEPENDENCY_TIMEOUT_MS: '10000' } } : {});
    await inBatches(symbols, (i) => tm.mark(sym(i), 100));
    await listMarkets(tm.app, 'U-PERP');
    await inBatches(symbols, async (i) => {
      await tm.deposit(2 * i + 1, i % 10 === 0 ? 41 : 200 + 10 * ((7 * i) % 50));
      await tm.deposit(2 * i + 2, 150 + 10 * ((11 * i) % 40));
      await expectOk(tm.trade(2 * i + 1, sym(i), 'BUY', 2, 100));
      await expectOk(tm.trade(2 * i + 2, sym(i), 'SELL', '1.5', 100));
    });
    await inBatches(Array.from({ length: 20 }, (_, k) => k), async (k) => {
      await tm.deposit(1001 + k, 5000);
      await expectOk(tm.trade(1001 + k, sym(k * 7), 'BUY', 1, 100));
      await expectOk(tm.trade(1001 + k, sym(k * 7 + 1), 'SELL', 1, 100));
    });
    await tm.deposit(1100, 1000);
    await expectOk(tm.trade(1100, 'U-PERP', 'BUY', 1, 50));
    await inBatches(Array.from({ length: 30 }, (_, k) => k), (k) => tm.deposit(2001 + k, k + 1));
    await inBatches(symbols, async (i) => expect((await tm.mark(sym(i), i % 2 === 0 ? 99 : 101)).liquidated).toEqual([]));
  }, 180_000);
  afterAll(async () => {
    await tm?.close();
  });

  let whole: Row[];
  it('lists every account once in one large page, in the report order', async () => {
    const res = await tm.get('/margin-report?limit=1000');
    expect(res.body.next_cursor).toBeNull();
    whole = res.body.accounts_detail;
    expect(whole).toHaveLength(TOTAL);
    expect(new Set(whole.map((r) => r.account_id)).size).toBe(TOTAL);
    for (let i = 1; i < whole.length; i++) expect(inOrder(whole[i - 1]!, whole[i]!), `rows ${i - 1} and ${i}`).toBe(true);
    // The book has what the paging below must get right: ties across lists, margin calls, flat accounts.
    const ties = whole.filter((r, i) => i > 0 && r.margin_utilisation_pct === whole[i - 1]!.margin_utilisation_pct);
    expect(ties.length).toBeGreaterThan(200);
    expect(whole.filter((r) => r.status === 'margin_call')).toHaveLength(30);
  });

  it('pages through every account, each once and in the same order, with every cursor under 200 characters', async () => {
    const { rows, cursors } = await walk('limit=10');
    expect(rows.map((r) => r.account_id)).toEqual(whole.map((r) => r.account_id));
    expect(cursors).toHaveLength(Math.ceil(TOTAL / 10) - 1);
    for (const cursor of cursors) expect(cursor.length).toBeLessThan(200);
    // 300 pages over 300 markets: with index shards each list is read from every shard (the `shards` and `cluster` projects), on a shared host.
  }, 400_000);

  it('pages a status filter to the end the same way', async () => {
    const calls = await walk('status=margin_call&limit=4');
    expect(calls.rows.map((r) => r.account_id)).toEqual(whole.filter((r) => r.status === 'margin_call').map((r) => r.account_id));
    const healthy = await walk('status=healthy&limit=97');
    expect(healthy.rows.map((r) => r.account_id)).toEqual(whole.filter((r) => r.status === 'healthy').map((r) => r.account_id));
    for (const cursor of [...calls.cursors, ...healthy.cursors]) expect(cursor.length).toBeLessThan(200);
  }, 60_000);

  it('refuses a forged cursor with 400 VALIDATION_ERROR', async () => {
    const forged = Buffer.from(JSON.stringify({ 'l:S000-PERP': 1 })).toString('base64url');
    for (const cursor of [forged, 'A'.repeat(257), Buffer.from('5:0').toString('base64url')]) {
      const res = await tm.get(`/margin-report?cursor=${cursor}`);
      expect(res.status).toBe(400);
      expect(res.body).toMatchObject({ success: false, error: { code: 'VALIDATION_ERROR' } });
    }
  });
});
