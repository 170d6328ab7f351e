/**
 * When Redis or PostgreSQL is unreachable the engine answers 503 quickly,
 * applies nothing anywhere, and serves again by itself once it returns.
 * A proxy of the test's own stands between the engine and each store.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newIsolation, startEngine, startTestEngine, type EngineFixture } from '../helpers/engine.js';
import { listen, send } from '../helpers/http.js';
import { TcpProxy, targetOf, viaProxy } from '../helpers/tcp-proxy.js';
import { sleep, until } from '../helpers/until.js';
import { reconcile } from '../../src/services/reconcile.js';

let pgProxy: TcpProxy;
let redisProxy: TcpProxy;
/** The engine under test; its inspector (t.db) reaches the stores directly, not through the proxies. */
let t: EngineFixture;
let base: string;

beforeAll(async () => {
  const iso = newIsolation();
  const pg = targetOf(iso.databaseUrl, 5432);
  const rd = targetOf(iso.redisUrl, 6379);
  pgProxy = new TcpProxy(pg.host, pg.port);
  redisProxy = new TcpProxy(rd.host, rd.port);
  const pgPort = await pgProxy.start();
  const redisPort = await redisProxy.start();
  t = await startTestEngine({
    iso,
    env: { DATABASE_URL: viaProxy(iso.databaseUrl, pgPort), REDIS_URL: viaProxy(iso.redisUrl, redisPort) },
  });
  base = await t.listen();
  await send(base, 'POST', '/accounts/1/deposit', { amount: 100000 });
  await send(base, 'POST', '/mark-price', { symbol: 'BTC-PERP', price: 50000 });
});
afterAll(async () => {
  await t?.close();
  await pgProxy?.close();
  await redisProxy?.close();
});

const buy = (clientOrderId?: string) =>
  send(base, 'POST', '/trade', {
    account_id: 1,
    symbol: 'BTC-PERP',
    side: 'BUY',
    quantity: '0.01',
    price: 50000,
    ...(clientOrderId ? { client_order_id: clientOrderId } : {}),
  });
const ledgerCount = async () => (await t.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ledger`)[0]!.n;
const redisState = () => t.db.redis.hgetall(t.keys.account(1).state);
/** Every mark PostgreSQL holds (price and version, per symbol) and the number of mark events. */
const markRecords = async () => ({
  marks: await t.db.sql`SELECT symbol, price::text AS price, version::text AS version, swept_version::text AS swept_version FROM mark_prices ORDER BY symbol`,
  events: (await t.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM market_events WHERE kind = 'mark'`)[0]!.n,
});

/**
 * The requests below meet an outage already in place. One racing the failure
 * (within MARKS_MAX_AGE_MS of Redis's last reply, on the trusted path) may be
 * booked in PostgreSQL and answered 200; the last test covers that case.
 */
const outageInPlace = () => sleep(60);

/** Until an answer is 200: the engine serves again. */
const served = { ok: (r: { status: number }) => r.status === 200, everyMs: 100, what: 'a 200' };

describe('PostgreSQL unreachable', () => {
  it('answers 503 within a second for trades, cash and marks, and changes nothing', async () => {
    const rows = await ledgerCount();
    const state = await redisState();
    const marksBefore = await markRecords();
    const redisMark = await t.db.redis.hget(t.keys.first.marks, 'BTC-PERP');
    pgProxy.cut();
    try {
      for (const req of [
        () => buy(),
        () => send(base, 'POST', '/accounts/1/deposit', { amount: 1 }),
        () => send(base, 'POST', '/accounts/1/withdraw', { amount: 1 }),
        () => send(base, 'POST', '/mark-price', { symbol: 'BTC-PERP', price: 1 }),
      ]) {
        const res = await req();
        expect(res.status).toBe(503);
        expect(res.body.error).toMatchObject({ code: 'SERVICE_UNAVAILABLE', details: { dependency: 'postgres' } });
        expect(res.ms).toBeLessThan(1000);
      }
      const ready = await send(base, 'GET', '/ready');
      expect(ready.status).toBe(503);
      expect(ready.body.error.details).toEqual({ redis: 'up', postgres: 'down' });
    } finally {
      await pgProxy.restore();
    }
    expect(await ledgerCount()).toBe(rows);
    expect(await redisState()).toEqual(state); // the lock was released, the account untouched
    expect(await markRecords()).toEqual(marksBefore); // the refused mark is nowhere
    expect(await t.db.redis.hget(t.keys.first.marks, 'BTC-PERP')).toBe(redisMark);
    const after = await until(() => buy(), served);
    expect(after.status).toBe(200);
    expect(await ledgerCount()).toBe(rows + 1);
  });

  it('answers 503 within a second when PostgreSQL hangs, and books nothing', async () => {
    const rows = await ledgerCount();
    pgProxy.blackhole();
    let res;
    try {
      res = await buy('hung-1');
    } finally {
      await pgProxy.restore();
    }
    expect(res.status).toBe(503);
    expect(res.ms).toBeLessThan(1000);
    // The hung commit never reached PostgreSQL; once the connection drops, the
    // lock is released and the same order books normally.
    const retry = await until(() => buy('hung-1'), served);
    expect(retry.status).toBe(200);
    expect(await ledgerCount()).toBe(rows + 1);
  });
});

describe('a mark whose commit PostgreSQL never confirms', () => {
  it('answers 503 within a second saying the outcome is unknown (not "nothing changed"), and the engine serves marks again after', async () => {
    await until(() => buy(), served); // the breaker is closed again after the tests before
    const marksBefore = await markRecords();
    pgProxy.blackhole();
    let res;
    try {
      res = await send(base, 'POST', '/mark-price', { symbol: 'BTC-PERP', price: 50001 });
    } finally {
      await pgProxy.restore();
    }
    expect(res.status).toBe(503);
    expect(res.body.error).toMatchObject({ code: 'SERVICE_UNAVAILABLE', details: { dependency: 'postgres', outcome: 'unknown' } });
    expect(res.ms).toBeLessThan(1000);
    // Blackholed, the statement never reached PostgreSQL: nothing was committed.
    expect(await markRecords()).toEqual(marksBefore);
    const again = await until(() => send(base, 'POST', '/mark-price', { symbol: 'BTC-PERP', price: 50001 }), served);
    expect(again.body).toMatchObject({ symbol: 'BTC-PERP', price: '50001', sweep: 'complete' });
    // An attempt of the retry loop may itself have timed out in doubt and committed after the 200
    // (answered 503 "outcome unknown"); recovery sweeps whatever committed, at once.
    const swept = await until(markRecords, { ok: (m) => m.marks.every((x) => x.version === x.swept_version), timeoutMs: 3000, what: 'every mark swept' });
    expect(swept.marks.every((m) => m.version === m.swept_version)).toBe(true);
    expect((await until(() => send(base, 'GET', '/ready'), served)).status).toBe(200);
  });
});

describe('Redis unreachable', () => {
  it('answers 503 within a second, books nothing, and recovers by itself', async () => {
    const rows = await ledgerCount();
    const marksBefore = await markRecords();
    redisProxy.cut();
    await outageInPlace();
    try {
      for (const req of [
        () => buy(),
        () => send(base, 'POST', '/accounts/1/deposit', { amount: 1 }),
        () => send(base, 'GET', '/positions/1'),
        () => send(base, 'POST', '/mark-price', { symbol: 'BTC-PERP', price: 50000 }),
      ]) {
        const res = await req();
        expect(res.status).toBe(503);
        expect(res.body.error).toMatchObject({ code: 'SERVICE_UNAVAILABLE', details: { dependency: 'redis' } });
        expect(res.ms).toBeLessThan(1000);
      }
      const ready = await send(base, 'GET', '/ready');
      expect(ready.body.error.details).toEqual({ redis: 'down', postgres: 'up' });
    } finally {
      await redisProxy.restore();
    }
    // A mark makes its Redis round trip before committing: the refused one reached neither store.
    expect((await t.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ledger`)[0]!.n).toBe(rows);
    expect(await markRecords()).toEqual(marksBefore);
    const after = await until(() => buy(), served);
    expect(after.status).toBe(200);
    expect((await send(base, 'GET', '/ready')).status).toBe(200);
  });

  it('answers 503 within a second when Redis hangs', async () => {
    const rows = await ledgerCount();
    redisProxy.blackhole();
    await outageInPlace();
    let res;
    let read;
    try {
      // A read whose commands hang first must not hold the trade's back:
      // each waits out one timeout, not the other's too.
      const reading = send(base, 'GET', '/positions/1');
      await new Promise((r) => setTimeout(r, 100));
      res = await buy();
      read = await reading;
    } finally {
      await redisProxy.restore();
    }
    expect(res.status).toBe(503);
    expect(res.ms).toBeLessThan(1000);
    expect(read.status).toBe(503);
    expect(read.ms).toBeLessThan(1000);
    expect(await ledgerCount()).toBe(rows);
    expect((await until(() => buy(), served)).status).toBe(200);
  });

  it('books a trade that raced a Redis hang, answers it, brings Redis level when Redis returns, and answers a tick behind a hung apply with 503 within a second', async () => {
    // A second engine that trusts its cached state for a minute: its next trade
    // reads nothing from Redis before committing, as one racing the failure would.
    const trusting = await startEngine(t.iso, {
      DATABASE_URL: viaProxy(t.iso.databaseUrl, pgProxy.listeningPort),
      REDIS_URL: viaProxy(t.iso.redisUrl, redisProxy.listeningPort),
      MARKS_MAX_AGE_MS: '60000',
      TRUSTED_PATH: 'on',
    });
    try {
      const tBase = await listen(trusting.app);
      const trade = () => send(tBase, 'POST', '/trade', { account_id: 1, symbol: 'BTC-PERP', side: 'BUY', quantity: '0.01', price: 50000 });
      expect((await trade()).status).toBe(200); // caches account 1
      const rows = await ledgerCount();
      redisProxy.blackhole();
      let res;
      try {
        res = await trade();
      } finally {
        await redisProxy.restore();
      }
      // Committed in PostgreSQL, so the answer is a durable 200 (the apply timed out).
      expect(res.status).toBe(200);
      expect(res.ms).toBeLessThan(1500);
      expect(await ledgerCount()).toBe(rows + 1);
      const head = (await t.db.sql<{ seq: string }[]>`SELECT max(seq) AS seq FROM ledger WHERE account_id = 1`)[0]!.seq;
      // The watch replays the missed row without waiting for the account's next operation.
      const state = await until(redisState, { ok: (s) => s.seq === head, timeoutMs: 5000, what: 'Redis at the ledger head' });
      expect(state.seq).toBe(head);
      expect(await reconcile(trusting.engine)).toEqual([]);

      // A mark posted while that engine's answered trade still hangs in its
      // apply: the tick waits for the apply only briefly, then meets the hang
      // itself, and still answers 503 within a second.
      expect((await trade()).status).toBe(200); // confirms the marks again
      redisProxy.blackhole();
      let tick;
      try {
        expect((await trade()).status).toBe(200); // answered at its commit; its apply hangs
        tick = await send(tBase, 'POST', '/mark-price', { symbol: 'BTC-PERP', price: 50000 });
      } finally {
        await redisProxy.restore();
      }
      expect(tick.status).toBe(503);
      expect(tick.ms).toBeLessThan(1000);
    } finally {
      await trusting.close();
    }
  });
});

