/**
 * Partial liquidations and the insurance fund survive what the rest of the
 * engine survives: Redis losing its state (rebuilt from the ledger, the
 * thresholds of what partial liquidations left open included), and a
 * SIGKILL between a liquidation's commit and its settlement against the
 * fund (recovery settles it, exactly once).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inspector, isolationEnv, newIsolation, startEngine, startTestEngine, type EngineFixture, type Inspector, type Isolation, type Res } from '../helpers/engine.js';
import { send } from '../helpers/http.js';
import { EngineProcess, freePort } from '../helpers/processes.js';
import { until } from '../helpers/until.js';
import { reconcile } from '../../src/services/reconcile.js';

const ok = (res: Res | { status: number; body: any }) => {
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
};

const PARTIAL_MARKET = {
  tiers: [
    { max_notional: '500', initial_margin_rate: '0.1', maintenance_margin_rate: '0.05' },
    { max_notional: null, initial_margin_rate: '0.2', maintenance_margin_rate: '0.1' },
  ],
  liquidation_mode: 'partial',
  lot_size: '0.1',
  liquidation_buffer: '0.02',
  liquidation_fee_rate: '0.01',
};

describe('Redis losing its state after partial liquidations', () => {
  let f: EngineFixture;
  beforeAll(async () => {
    f = await startTestEngine();
  });
  afterAll(async () => {
    await f?.close();
  });

  it('rebuilds the positions partial liquidations left, their thresholds, and leaves the fund as it was', async () => {
    ok(await f.put('/markets/RR-PERP', PARTIAL_MARKET));
    await f.mark('RR-PERP', 100);
    ok(await f.post('/insurance-fund/deposit', { amount: '25' }));
    const ids = [1, 2, 3];
    for (const id of ids) {
      await f.deposit(id, 150 + id * 5);
      ok(await f.trade(id, 'RR-PERP', 'BUY', 10, 100));
    }
    // A tick that puts all three under maintenance: each is sliced, none closed.
    const tick = await f.mark('RR-PERP', 89);
    expect(tick.liquidated).toEqual(ids);
    const records = ok(await f.get('/liquidations?limit=10')).liquidations;
    expect(records.map((r: any) => r.mode)).toEqual(['partial', 'partial', 'partial']);
    const before = {
      positions: await Promise.all(ids.map(async (id) => ok(await f.get(`/positions/${id}`)))),
      fund: ok(await f.get('/insurance-fund')),
      report: ok(await f.get('/margin-report?limit=100')),
    };
    expect(before.fund.fees_received).not.toBe('0');

    await f.db.wipe();
    await until(async () => (await f.get('/ready')).status === 200, { what: 'the engine ready again' });

    const after = {
      positions: await Promise.all(ids.map(async (id) => ok(await f.get(`/positions/${id}`)))),
      fund: ok(await f.get('/insurance-fund')),
      report: ok(await f.get('/margin-report?limit=100')),
    };
    expect(after).toEqual(before);
    expect(await reconcile(f.engine)).toEqual([]);
    // The rebuilt index knows the thresholds of what is left: the next tick slices again.
    const lower = await f.mark('RR-PERP', 84);
    expect(lower.liquidated.length).toBeGreaterThan(0);
    for (const id of lower.liquidated) {
      const [latest] = ok(await f.get(`/liquidations?account_id=${id}&limit=1`)).liquidations;
      expect(latest.positions[0].mark_price).toBe('84');
    }
    expect(await reconcile(f.engine)).toEqual([]);
  });
});

describe('SIGKILL between a liquidation and its settlement against the fund', () => {
  let iso: Isolation;
  let engine: EngineProcess;
  let db: Inspector;

  beforeAll(async () => {
    iso = newIsolation();
    engine = new EngineProcess({ ...isolationEnv(iso), LOG_LEVEL: 'warn' }, await freePort());
    await engine.start();
    db = inspector(iso);
  }, 60_000);
  afterAll(async () => {
    await engine?.kill();
    await db?.destroy();
  });

  const post = (url: string, body: unknown) => send(engine.base, 'POST', url, body);
  const get = (url: string) => send(engine.base, 'GET', url);

  it('settles the committed liquidations at restart, each fee and shortfall counted once, fees before shortfalls', async () => {
    ok(await send(engine.base, 'PUT', '/markets/SK-PERP', PARTIAL_MARKET));
    ok(await post('/mark-price', { symbol: 'SK-PERP', price: 100 }));
    ok(await post('/insurance-fund/deposit', { amount: '4' }));
    // At 89, account 1 (equity 50 < maintenance 89 − 25 = 64) is sliced: 50 − 0.89·Δ ≥ 1.02·(8.9·(10 − Δ) − 25)
    // gives Δ ≥ 1.866…, so 1.9, and a fee of 0.01·1.9·89 = 1.691. Account 2 (50 on 5 @ 100) goes under water: shortfall 5.
    ok(await post('/accounts/1/deposit', { amount: 160 }));
    ok(await post('/trade', { account_id: 1, symbol: 'SK-PERP', side: 'BUY', quantity: 10, price: 100 }));
    ok(await post('/accounts/2/deposit', { amount: 50 }));
    ok(await post('/trade', { account_id: 2, symbol: 'SK-PERP', side: 'BUY', quantity: 5, price: 100 }));

    // Hold the fund's row: the liquidations commit, their settlement waits.
    const held = await db.sql.reserve();
    await held`BEGIN`;
    await held`SELECT id FROM insurance_fund WHERE id = 1 FOR UPDATE`;
    const tick = send(engine.base, 'POST', '/mark-price', { symbol: 'SK-PERP', price: 89 }, 30_000).catch(() => null);
    await until(async () => (await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM liquidations WHERE NOT settled`)[0]!.n === 2, {
      what: 'two liquidations committed, not settled',
    });
    await engine.kill();
    // The dead engine's settlement may still be queued on the lock: end it, so only recovery can settle.
    await db.sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%settle_insurance%' AND pid <> pg_backend_pid() AND state <> 'idle'`;
    await held`ROLLBACK`;
    held.release();
    await tick;
    expect((await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM liquidations WHERE NOT settled`)[0]!.n).toBe(2);

    await engine.start();
    const unsettled = (await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM liquidations WHERE NOT settled`)[0]!.n;
    expect(unsettled).toBe(0);
    const [sliced] = ok(await get('/liquidations?account_id=1')).liquidations;
    const [closed] = ok(await get('/liquidations?account_id=2')).liquidations;
    expect(sliced).toMatchObject({ mode: 'partial', fee: '1.691', positions: [{ quantity: '1.9' }], positions_left: [{ quantity: '8.1' }] });
    expect(closed).toMatchObject({ mode: 'full', shortfall: '5', bad_debt: '0' });
    // The fee came in before the shortfall drew (4 + 1.691 covers 5); the other way round 1 would be bad debt.
    expect(ok(await get('/insurance-fund'))).toEqual({ balance: '0.691', fees_received: '1.691', deposits: '4', shortfalls_paid: '5', bad_debt: '0' });
    expect(ok(await get('/positions/1'))).toMatchObject({ balance: '137.409' });
    const movements = ok(await get('/insurance-fund/history')).movements;
    expect(movements.map((m: any) => [m.type, m.account_id])).toEqual([
      ['shortfall', 2],
      ['fee', 1],
      ['deposit', null],
    ]);
    const checker = await startEngine(iso);
    try {
      expect(await reconcile(checker.engine)).toEqual([]);
    } finally {
      await checker.close();
    }
  }, 60_000);
});
