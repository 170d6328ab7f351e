/**
 * On the trusted path an operation is answered once its rows are committed in
 * PostgreSQL (the contract: a 200 means committed), and its Redis apply follows.
 * What this process serves must still include every write it acknowledged:
 * reads of the account, the margin report and the next mark tick wait for the
 * applies, and shutdown lets them land.
 *
 * A proxy of the test's own slows every Redis round trip, so an apply is
 * still on its way when the answer arrives and a read could overtake it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, newIsolation, startEngine, startTestEngine, type EngineFixture } from '../helpers/engine.js';
import { listen, send } from '../helpers/http.js';
import { TcpProxy, targetOf, viaProxy } from '../helpers/tcp-proxy.js';
import { until } from '../helpers/until.js';
import { reconcile } from '../../src/services/reconcile.js';

/** Each way, per chunk: an apply takes at least two of these. */
const DELAY_MS = 250;

let redisProxy: TcpProxy;
/** The engine under test; its inspector (t.db) reaches Redis directly, not through the proxy. */
let t: EngineFixture;
let base: string;

/** Settings of an engine on the trusted path (marks trusted for a minute), its Redis (at `redisUrl`) behind the proxy. */
const trusting = (redisUrl: string) => ({
  REDIS_URL: viaProxy(redisUrl, redisProxy.listeningPort),
  TRUSTED_PATH: 'on',
  MARKS_MAX_AGE_MS: '60000',
  // A slowed apply behind another takes up to four delays: well within half of this.
  DEPENDENCY_TIMEOUT_MS: '3000',
});

beforeAll(async () => {
  const iso = newIsolation();
  const rd = targetOf(iso.redisUrl, 6379);
  redisProxy = new TcpProxy(rd.host, rd.port);
  await redisProxy.start();
  t = await startTestEngine({ iso, env: trusting(iso.redisUrl) });
  base = await t.listen();
  expect((await send(base, 'POST', '/mark-price', { symbol: 'BTC-PERP', price: '50000' })).status).toBe(200);
});
afterAll(async () => {
  await t?.close();
  await redisProxy?.close();
});

const deposit = async (accountId: number, amount: string, at = base) =>
  expect((await send(at, 'POST', `/accounts/${accountId}/deposit`, { amount })).status).toBe(200);
const buy = (accountId: number, quantity: string, at = base) =>
  send(at, 'POST', '/trade', { account_id: accountId, symbol: 'BTC-PERP', side: 'BUY', quantity, price: '50000' });
/** Redis's copy of the account, read directly. */
const stateOf = (accountId: number) => t.db.redis.hgetall(t.keys.account(accountId).state);

async function slowRedis<T>(f: () => Promise<T>): Promise<T> {
  redisProxy.delay(DELAY_MS);
  try {
    return await f();
  } finally {
    redisProxy.delay(0);
  }
}

describe('acknowledgement at commit (trusted path)', () => {
  it('answers a trade once it is committed, before Redis holds it, and Redis then catches up', async () => {
    await deposit(11, '100000'); // caches the account (and confirms the marks)
    const { res, seqAtAnswer } = await slowRedis(async () => {
      const res = await buy(11, '0.1');
      return { res, seqAtAnswer: (await stateOf(11)).seq };
    });
    expect(res.status).toBe(200);
    expect(res.ms).toBeLessThan(2 * DELAY_MS); // an apply takes two delays at least: the answer did not wait for one
    const booked = await t.db.sql<{ seq: string }[]>`SELECT seq::text FROM ledger WHERE account_id = 11 ORDER BY seq`;
    expect(booked.map((r) => r.seq)).toEqual(['1', '2']);
    expect(seqAtAnswer).toBe('1'); // the apply was still on its way
    await t.engine.recovery.idle();
    const read = await t.app.inject({ method: 'GET', url: '/positions/11', headers: { authorization: `Bearer ${ADMIN_KEY}` } }); // waits for the apply
    expect(read.statusCode).toBe(200);
    expect((await stateOf(11)).seq).toBe('2');
  });

  it('serves a read of the account with every write acknowledged on it, even one Redis has not applied yet', async () => {
    await deposit(21, '100000');
    await deposit(22, '100000');
    const { second, view, report } = await slowRedis(async () => {
      // The first trade's apply is in flight; the second's queues behind it,
      // so a read sent now would reach Redis before it.
      expect((await buy(21, '0.1')).status).toBe(200);
      const second = await buy(22, '0.2');
      const view = await send(base, 'GET', '/positions/22');
      const report = await send(base, 'GET', '/margin-report?limit=500');
      return { second, view, report };
    });
    expect(second.status).toBe(200);
    expect(second.ms).toBeLessThan(2 * DELAY_MS);
    expect(view.status).toBe(200);
    expect(view.body.positions).toEqual([expect.objectContaining({ symbol: 'BTC-PERP', quantity: '0.2', entry_price: '50000' })]);
    expect(report.status).toBe(200);
    const row = report.body.accounts_detail.find((a: { account_id: number }) => a.account_id === 22);
    expect(row).toMatchObject({ notional: '10000' });
  });

  it('lets a mark posted after acknowledged trades see them: the tick itself liquidates them', async () => {
    await deposit(31, '100000');
    await deposit(32, '10000');
    const { trade, tick } = await slowRedis(async () => {
      expect((await buy(31, '0.1')).status).toBe(200); // its apply in flight
      const trade = await buy(32, '0.9'); // initial margin 9,000 of equity 10,000
      // At 40,000 account 32's equity (1,000) is below maintenance (3,600).
      const tick = await send(base, 'POST', '/mark-price', { symbol: 'BTC-PERP', price: '40000' });
      return { trade, tick };
    });
    expect(trade.status).toBe(200);
    expect(trade.ms).toBeLessThan(2 * DELAY_MS);
    expect(tick.status).toBe(200);
    expect(tick.body.liquidated).toEqual([32]);
    const reasons = await t.db.sql<{ reason: string }[]>`SELECT reason FROM liquidations WHERE account_id = 32`;
    expect(reasons.map((r) => r.reason)).toEqual(['mark_price']);
    expect(await reconcile(t.engine)).toEqual([]);
  });

  it('re-checks, right after answering, an account whose mark moved between the decision and the write', async () => {
    await send(base, 'POST', '/mark-price', { symbol: 'BTC-PERP', price: '50000' });
    await deposit(51, '10000'); // cached here, with the marks at 50,000
    // Another engine moves the mark; this one trusts its copy for a minute (TRUSTED_PATH=on, MARKS_MAX_AGE_MS=60000).
    const other = await startEngine(t.iso);
    try {
      expect((await send(await listen(other.app), 'POST', '/mark-price', { symbol: 'BTC-PERP', price: '40000' })).status).toBe(200);
    } finally {
      await other.close();
    }
    // Checked at 50,000 (initial margin 9,000 of equity 10,000) and booked; its
    // apply reports the moved mark, and at 40,000 equity 1,000 is under maintenance 3,600.
    const res = await buy(51, '0.9');
    expect(res.status).toBe(200);
    const reasons = await until(
      async () => (await t.db.sql<{ reason: string }[]>`SELECT reason FROM liquidations WHERE account_id = 51`).map((r) => r.reason),
      { ok: (r) => r.length > 0, timeoutMs: 5000, everyMs: 20, what: 'the liquidation of account 51' },
    );
    expect(reasons).toEqual(['trade']);
    expect((await send(base, 'GET', '/positions/51')).body.positions).toEqual([]);
  });

  it('lets the applies of answered operations land before shutting down', async () => {
    const other = await startEngine(t.iso, trusting(t.iso.redisUrl));
    const at = await listen(other.app);
    try {
      await send(at, 'POST', '/mark-price', { symbol: 'BTC-PERP', price: '50000' });
      await deposit(41, '100000', at);
      await deposit(42, '100000', at);
      const { first, second } = await slowRedis(async () => {
        const first = await buy(41, '0.1', at); // its apply in flight
        const second = await buy(42, '0.1', at); // its apply queued behind
        await other.close(); // at once
        return { first, second };
      });
      expect([first.status, second.status]).toEqual([200, 200]);
      expect(second.ms).toBeLessThan(2 * DELAY_MS);
      expect((await stateOf(41)).seq).toBe('2');
      expect((await stateOf(42)).seq).toBe('2');
    } finally {
      await other.close().catch(() => undefined);
    }
  });
});
