/**
 * Rebuildable: Redis can be rebuilt from PostgreSQL and then
 * equals what it was; the engine notices a Redis that lost its state, reports
 * not-ready, rebuilds and serves again; reconcile lists every difference.
 */
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, listMarkets, startEngine, startTestEngine, type EngineFixture } from '../helpers/engine.js';
import { until } from '../helpers/until.js';
import { BOOT_FIELD, EPOCH_FIELD } from '../../src/store/marks-hash.js';
import { reconcile } from '../../src/services/reconcile.js';

let t: EngineFixture;

beforeAll(async () => {
  t = await startTestEngine();
});
afterAll(async () => {
  await t?.close();
});

const post = (url: string, body: unknown) => t.post(url, body);
const get = (url: string) => t.get(url);

/** Everything a client can read about the accounts and the risk picture. */
async function observable(ids: number[]) {
  const positions = await Promise.all(ids.map((id) => get(`/positions/${id}`)));
  const report = await get('/margin-report?limit=1000');
  return { positions: positions.map((p) => p.body), report: report.body };
}

/** Deletes every key of an engine's prefix: what a FLUSHALL or a restart without persistence does to it. */
async function wipeRedis(e: EngineFixture = t): Promise<void> {
  await e.db.wipe();
}

/** Until the engine answers ready again (after it noticed the loss and rebuilt). */
const untilReady = (e: EngineFixture = t) => until(async () => (await e.get('/ready')).status === 200, { what: 'the engine ready again' });

describe('Redis losing its state', () => {
  const ids = [1, 2, 3, 4];
  let firstTrade: { status: number; body: any };

  beforeAll(async () => {
    await post('/mark-price', { symbol: 'BTC-PERP', price: 50000 });
    await post('/mark-price', { symbol: 'ETH-PERP', price: 3000 });
    for (const id of ids) await post(`/accounts/${id}/deposit`, { amount: 10000 });
    firstTrade = await post('/trade', { account_id: 1, symbol: 'BTC-PERP', side: 'BUY', quantity: '0.1', price: 50000, client_order_id: 'keep-me' });
    await post('/trade', { account_id: 2, symbol: 'ETH-PERP', side: 'SELL', quantity: '1.5', price: 3010 });
    await post('/trade', { account_id: 3, symbol: 'BTC-PERP', side: 'BUY', quantity: '0.05', price: 49000 });
    await post('/trade', { account_id: 3, symbol: 'ETH-PERP', side: 'BUY', quantity: '1', price: '2999.5' });
    await post('/accounts/4/withdraw', { amount: '123.45' });
    // account 5 is liquidated: its history must survive a rebuild too
    await post('/accounts/5/deposit', { amount: 600 });
    await post('/trade', { account_id: 5, symbol: 'BTC-PERP', side: 'BUY', quantity: '0.06', price: 50000 });
    // 600 − 0.06·(50000 − m) < 0.1·0.06·m  ⇔  m < 44444.4…: a tick at 44000 liquidates it
    expect((await post('/mark-price', { symbol: 'BTC-PERP', price: 44000 })).body.liquidated).toEqual([5]);
    ids.push(5);
  });

  it('is noticed: the engine reports not-ready and answers 503, then rebuilds and serves the same state', async () => {
    const before = await observable(ids);
    expect(before.positions[4].positions).toEqual([]); // account 5 was liquidated
    expect(await reconcile(t.engine)).toEqual([]);

    await wipeRedis();
    const during = await get('/positions/1');
    expect(during.status).toBe(503);
    const notReady = await get('/ready');
    expect(notReady.status).toBe(503);
    expect(notReady.body.error.details).toEqual({ redis: 'down', postgres: 'up' });
    expect(await untilReady()).toBe(true);

    expect(await observable(ids)).toEqual(before);
    expect(await reconcile(t.engine)).toEqual([]);
  });

  it('keeps client order ids idempotent across the rebuild', async () => {
    await wipeRedis();
    await untilReady();
    const rows = (await t.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ledger`)[0]!.n;
    const again = await post('/trade', { account_id: 1, symbol: 'BTC-PERP', side: 'BUY', quantity: '0.1', price: 50000, client_order_id: 'keep-me' });
    expect(again).toEqual(firstTrade);
    expect((await t.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ledger`)[0]!.n).toBe(rows);
  });

  it('trades, ticks and liquidates normally after the rebuild', async () => {
    await wipeRedis();
    await untilReady();
    const trade = await post('/trade', { account_id: 2, symbol: 'ETH-PERP', side: 'BUY', quantity: '0.5', price: 3000 });
    expect(trade.status).toBe(200);
    // account 2 is short 1.0 ETH @ 3010 after that; 10000 + realised 5 → a tick at 12000 ruins it
    const tick = await post('/mark-price', { symbol: 'ETH-PERP', price: 12000 });
    expect(tick.body.liquidated).toContain(2);
    expect(await reconcile(t.engine)).toEqual([]);
  });
});

describe('reconcile', () => {
  it('lists a balance, a position and a mark that Redis got wrong, and nothing else', async () => {
    // The marks the test before leaves (posting one again at its price changes nothing).
    await t.mark('BTC-PERP', 44000);
    await t.mark('ETH-PERP', 12000);
    await post('/accounts/7/deposit', { amount: 1000 });
    // At the BTC-PERP mark (44000), inside the trade price band.
    expect((await post('/trade', { account_id: 7, symbol: 'BTC-PERP', side: 'SELL', quantity: '0.01', price: 44000 })).status).toBe(200);
    expect(await reconcile(t.engine)).toEqual([]);
    const { state } = t.keys.account(7);
    await t.db.redis.hset(state, 'bal', '999999');
    await t.db.redis.hset(state, 'q:BTC-PERP', '-0.02');
    await t.db.redis.hset(t.keys.first.marks, 'ETH-PERP', '1');
    const diffs = await reconcile(t.engine);
    expect(diffs).toHaveLength(3);
    expect(diffs.join('\n')).toMatch(/account 7: balance redis 999999, ledger /);
    expect(diffs.join('\n')).toMatch(/account 7 BTC-PERP: position redis -0.02 @ 44000, ledger -0.01 @ 44000/);
    expect(diffs.join('\n')).toMatch(/mark ETH-PERP: redis 1, ledger 12000/);
    // an on-demand rebuild (what `npm run rebuild` does) repairs all of it
    await t.db.redis.hdel(t.keys.first.marks, BOOT_FIELD);
    expect(await t.engine.recovery.rebuildOrWait()).toMatchObject({ accounts: expect.any(Number) });
    expect(await reconcile(t.engine)).toEqual([]);
  });
});

describe('index shards', () => {
  it('runs with the configured shards, and rebuilds every shard when one lost its copy of the marks (a cluster node restarted empty)', async () => {
    const onCluster = process.env.TEST_REDIS_CLUSTER === '1';
    // The cluster project's engines talk to its cluster, with the cluster's default of 16 shards.
    expect(t.engine.redis instanceof Cluster).toBe(onCluster);
    expect(t.engine.keys.shards.length).toBe(onCluster ? 16 : Number(process.env.TEST_REDIS_SHARDS ?? 1));
    const last = t.keys.shards[t.keys.shards.length - 1]!;
    await t.db.redis.del(last.marks);
    await untilReady();
    for (const shard of t.keys.shards) {
      expect(await t.db.redis.hget(shard.marks, 'BTC-PERP')).toBe('44000');
      expect(await t.db.redis.hexists(shard.marks, BOOT_FIELD)).toBe(1);
    }
    // Every account is in its own shard's account set, and nowhere else.
    for (const shard of t.keys.shards) {
      for (const m of await t.db.redis.smembers(shard.accounts)) expect(t.keys.shardOf(Number(m))).toBe(shard.shard);
    }
    expect(await reconcile(t.engine)).toEqual([]);
  });
});

describe('a process that died between its PostgreSQL commit and its Redis apply', () => {
  it('is completed on restart: the next engine catches Redis up with the ledger', async () => {
    await post('/accounts/8/deposit', { amount: 5000 });
    // Rows committed by a writer that died before touching Redis.
    await t.db.sql`
      INSERT INTO ledger (account_id, seq, kind, symbol, side, quantity, price, realised_pnl, position_quantity, position_entry_price, equity, balance)
      VALUES (8, 2, 'TRADE', 'BTC-PERP', 'BUY', 0.02, 50000, 0, 0.02, 50000, 5000, 5000)`;
    await t.db.sql`INSERT INTO ledger (account_id, seq, kind, amount, balance) VALUES (8, 3, 'DEPOSIT', 10, 5010)`;
    expect((await reconcile(t.engine)).filter((d) => d.startsWith('account 8'))).not.toEqual([]);

    const restarted = await startEngine(t.iso);
    try {
      const view = await call(restarted.app, 'GET', '/positions/8');
      expect(view.body).toMatchObject({ balance: '5010', positions: [{ symbol: 'BTC-PERP', quantity: '0.02', entry_price: '50000' }] });
      expect(await reconcile(restarted.engine)).toEqual([]);
    } finally {
      await restarted.close();
    }
  });
});

/**
 * An engine of its own (its own schema and key prefix) for `body`, with a
 * request helper and `loseRedis`: every key of its prefix deleted, then
 * waiting until the engine has rebuilt and is ready again.
 */
async function withOwnEngine(
  env: Record<string, string>,
  body: (t: {
    e: EngineFixture;
    req: (method: 'GET' | 'POST', url: string, body?: unknown) => ReturnType<typeof call>;
    loseRedis: () => Promise<void>;
  }) => Promise<void>,
): Promise<void> {
  const e = await startTestEngine({ env });
  const req = (method: 'GET' | 'POST', url: string, payload?: unknown) => call(e.app, method, url, payload);
  const loseRedis = async () => {
    await wipeRedis(e);
    expect(await untilReady(e)).toBe(true);
  };
  try {
    await body({ e, req, loseRedis });
  } finally {
    await e.close();
  }
}

describe('marks after a rebuild', () => {
  it('checks a trade at the mark posted after the rebuild, although the epoch counter started again', async () => {
    // Its own engine, so the marks' epoch is known: two posts take it to 2.
    await withOwnEngine({ MARKS_MAX_AGE_MS: '60000' }, async ({ e, req, loseRedis }) => {
      await req('POST', '/mark-price', { symbol: 'SOL-PERP', price: 100 });
      await req('POST', '/mark-price', { symbol: 'SOL-PERP', price: 110 });
      await req('POST', '/accounts/1/deposit', { amount: 1000 });
      expect((await req('POST', '/trade', { account_id: 1, symbol: 'SOL-PERP', side: 'BUY', quantity: 5, price: 110 })).status).toBe(200);
      const epoch = await e.db.redis.hget(e.keys.first.marks, EPOCH_FIELD); // the engine's copy of the marks is at this epoch, at 110
      // Redis loses everything; the engine rebuilds it (epoch 1, mark 110), and two ticks take the epoch back to where it was.
      await loseRedis();
      expect((await req('POST', '/mark-price', { symbol: 'SOL-PERP', price: 90 })).status).toBe(200);
      expect((await req('POST', '/mark-price', { symbol: 'SOL-PERP', price: 60 })).status).toBe(200);
      expect(await e.db.redis.hget(e.keys.first.marks, EPOCH_FIELD)).toBe(epoch);
      // The tick leaves the account healthy: equity 1000 + 5·(60 − 110) = 750 >= IM 0.2·5·60 = 60.
      // At mark 110 a buy of 60 at 60 would fit: equity 1000 + 60·(110 − 60) = 4000 >= IM 0.2·65·110 = 1430.
      // At mark 60 it does not: IM 0.2·65·60 = 780 > equity 1000 + 65·(60 − 63.846153846153846154) =
      // 749.99999999999999999 (the averaged entry (5·110 + 60·60)/65 rounds to 18 places).
      const res = await req('POST', '/trade', { account_id: 1, symbol: 'SOL-PERP', side: 'BUY', quantity: 60, price: 60 });
      expect(res.status).toBe(422);
      expect(res.body.error.details).toEqual({ required: '780', available: '749.99999999999999999' });
    });
  });
});

describe('client order results kept for CLIENT_ORDER_RETENTION_S', () => {
  it('expires them in Redis, answers later repeats from the ledger, and rebuilds only recent ones', async () => {
    await withOwnEngine({ CLIENT_ORDER_RETENTION_S: '1' }, async ({ e, req, loseRedis }) => {
      const hash = e.keys.account(1).clientOrders;
      await listMarkets(e.app, 'BTC-PERP');
      await req('POST', '/accounts/1/deposit', { amount: 100000 });
      const order = (id: string) => ({ account_id: 1, symbol: 'BTC-PERP', side: 'BUY', quantity: '0.01', price: 50000, client_order_id: id });
      const first = await req('POST', '/trade', order('old-1'));
      expect(first.status).toBe(200);
      const ttl = await e.db.redis.pttl(hash);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(1000);
      expect(await until(async () => (await e.db.redis.exists(hash)) === 0, { timeoutMs: 3000, what: 'the client orders expiring' })).toBe(true);
      // Redis forgot it; the ledger did not.
      const again = await req('POST', '/trade', order('old-1'));
      expect(again.status).toBe(200);
      expect(again.body).toEqual(first.body);
      expect((await req('POST', '/trade', { ...order('old-1'), quantity: '0.02' })).status).toBe(409);
      expect(await reconcile(e.engine)).toEqual([]); // a result Redis no longer holds is not a difference
      // A record Redis holds must be the ledger's.
      await e.db.redis.hset(hash, 'never-booked', '{}');
      expect(await reconcile(e.engine)).toEqual(['account 1: client order never-booked not in the ledger']);
      await e.db.redis.hdel(hash, 'never-booked');

      // A rebuild puts back only the orders booked within the window: once, by PostgreSQL's clock (which
      // the rebuild goes by), old-1 was booked longer ago than that, a new order is booked.
      await until(
        async () => (await e.db.sql<{ out: boolean }[]>`SELECT created_at <= now() - interval '1 second' AS out FROM ledger WHERE client_order_id = 'old-1'`)[0]!.out,
        { timeoutMs: 3000, what: 'old-1 out of the retention window' },
      );
      expect((await req('POST', '/trade', order('new-1'))).status).toBe(200);
      await loseRedis();
      expect(await e.db.redis.hkeys(hash)).toEqual(['new-1']);
      expect((await req('POST', '/trade', order('old-1'))).body).toEqual(first.body);
    });
  });
});
