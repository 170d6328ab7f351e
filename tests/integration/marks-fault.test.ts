/**
 * A mark is all or nothing, under faults: a private redis-server
 * that is paused (SIGSTOP), ledger commits that PostgreSQL refuses, and an
 * engine child process that is SIGKILLed. An error answer means nothing
 * changed anywhere; a committed mark always finishes its liquidation sweep.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, inspector, isolationEnv, newIsolation, recoveryPasses, startEngine, startTestEngine, type EngineFixture } from '../helpers/engine.js';
import { send } from '../helpers/http.js';
import { EngineProcess, PrivateRedis, freePort } from '../helpers/processes.js';
import { until } from '../helpers/until.js';
import { reconcile } from '../../src/services/reconcile.js';

let redis: PrivateRedis;
let te: EngineFixture;

beforeAll(async () => {
  redis = new PrivateRedis(await freePort());
  await redis.start();
  te = await startTestEngine({ iso: { ...newIsolation(), redisUrl: redis.url } });
}, 60_000);

afterAll(async () => {
  redis.resume();
  await te?.close();
  await redis?.kill();
});

const api = (method: 'GET' | 'POST' | 'PUT', url: string, body?: unknown) => call(te.app, method, url, body);

/**
 * A market at mark 100 and an account holding 1 long bought at 100 with
 * 25 of cash: IM 20 ≤ 25. At mark 80 its equity is 25 − 20 = 5 < MM 8, so
 * a mark of 80 must liquidate it.
 */
async function endangeredAccount(symbol: string): Promise<number> {
  const id = te.freshAccount();
  expect((await api('POST', '/mark-price', { symbol, price: '100' })).status).toBe(200);
  expect((await api('POST', `/accounts/${id}/deposit`, { amount: '25' })).status).toBe(200);
  expect((await api('POST', '/trade', { account_id: id, symbol, side: 'BUY', quantity: '1', price: '100' })).status).toBe(200);
  return id;
}

async function markRow(symbol: string) {
  const rows = await te.db.sql<{ price: string; version: string; swept_version: string }[]>`
    SELECT price::text, version::text, swept_version::text FROM mark_prices WHERE symbol = ${symbol}`;
  return rows[0];
}

const liquidationsOf = async (id: number) => (await te.db.sql<{ actor: string | null }[]>`SELECT actor FROM liquidations WHERE account_id = ${id}`).map((r) => r.actor);

/** Until the mark's sweep is recorded (swept_version caught up with version 2); returns how long that took. */
async function untilSwept(symbol: string): Promise<number> {
  const started = performance.now();
  await until(async () => (await markRow(symbol))!.swept_version === '2', { timeoutMs: 5000, what: `the sweep of ${symbol}` });
  return performance.now() - started;
}

describe('a mark post answered with an error', () => {
  it('with Redis paused answers 503 fast and changes nothing: not PostgreSQL, not Redis, no listing, no liquidation', async () => {
    const id = await endangeredAccount('PAUSE-PERP');
    const started = performance.now();
    redis.pause();
    let answer: { status: number; body: any };
    let listing: { status: number; body: any };
    try {
      [answer, listing] = await Promise.all([
        api('POST', '/mark-price', { symbol: 'PAUSE-PERP', price: '80' }),
        api('POST', '/mark-price', { symbol: 'NEWLY-PERP', price: '5' }),
      ]);
    } finally {
      redis.resume();
    }
    const ms = performance.now() - started;
    expect(answer.status).toBe(503);
    expect(answer.body.error.code).toBe('SERVICE_UNAVAILABLE');
    expect(listing.status).toBe(503);
    expect(ms).toBeLessThan(2000);
    // PostgreSQL: the mark is unchanged, and nothing was listed or recorded.
    expect(await markRow('PAUSE-PERP')).toEqual({ price: '100', version: '1', swept_version: '1' });
    expect(await te.db.sql`SELECT 1 FROM markets WHERE symbol = 'NEWLY-PERP'`).toHaveLength(0);
    expect((await te.db.sql`SELECT 1 FROM market_events WHERE symbol = 'PAUSE-PERP' AND price = 80`).length).toBe(0);
    // Redis, once it answers again, and the engine's view: still at 100, and past a recovery pass nothing is liquidated.
    await recoveryPasses(te.engine, 1);
    expect((await api('GET', `/positions/${id}`)).body).toMatchObject({ balance: '25', positions: [{ symbol: 'PAUSE-PERP', mark_price: '100' }] });
    expect(await liquidationsOf(id)).toEqual([]);
    expect((await api('GET', '/markets/NEWLY-PERP')).status).toBe(404);
    // The same post once Redis answers goes through whole.
    const retry = await api('POST', '/mark-price', { symbol: 'PAUSE-PERP', price: '80' });
    expect(retry.body).toEqual({ symbol: 'PAUSE-PERP', price: '80', liquidated: [id], sweep: 'complete' });
    expect(await markRow('PAUSE-PERP')).toEqual({ price: '80', version: '2', swept_version: '2' });
    console.log(`mark with redis paused: 503 in ${ms.toFixed(0)} ms, nothing changed; retried: liquidated ${id}`);
  });
});

describe('a market change answered with an error', () => {
  it('with Redis paused answers 503 and changes nothing: the market keeps its status and history', async () => {
    await endangeredAccount('HALTLESS-PERP');
    const before = await te.db.sql`SELECT status, params, version::text FROM markets WHERE symbol = 'HALTLESS-PERP'`;
    redis.pause();
    let answer: { status: number; body: any };
    try {
      answer = await api('PUT', '/markets/HALTLESS-PERP', { status: 'halted' });
    } finally {
      redis.resume();
    }
    expect(answer.status).toBe(503);
    expect(await te.db.sql`SELECT status, params, version::text FROM markets WHERE symbol = 'HALTLESS-PERP'`).toEqual(before);
    expect(await te.db.sql`SELECT 1 FROM market_events WHERE symbol = 'HALTLESS-PERP' AND kind = 'params'`).toHaveLength(0);
    expect((await api('GET', '/markets/HALTLESS-PERP')).body.status).toBe('active');
  });
});

describe('a committed mark', () => {
  it('whose Redis publish hangs after the commit answers 202 and is swept once Redis answers again', async () => {
    const id = await endangeredAccount('HANG-PERP');
    // Hold the mark's transaction for 400 ms before it commits, so Redis can be paused between the engine's check of it and the commit.
    await te.db.sql.unsafe(`
      CREATE FUNCTION ${te.iso.schema}.slow_mark() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.4); RETURN NEW; END $$;
      CREATE TRIGGER slow_mark BEFORE INSERT ON ${te.iso.schema}.market_events FOR EACH ROW WHEN (NEW.kind = 'mark' AND NEW.symbol = 'HANG-PERP')
        EXECUTE FUNCTION ${te.iso.schema}.slow_mark();`);
    let answer: { status: number; body: any };
    try {
      const posting = api('POST', '/mark-price', { symbol: 'HANG-PERP', price: '80' });
      await new Promise((r) => setTimeout(r, 150));
      redis.pause();
      answer = await posting;
    } finally {
      redis.resume();
      await te.db.sql.unsafe(`DROP TRIGGER slow_mark ON ${te.iso.schema}.market_events; DROP FUNCTION ${te.iso.schema}.slow_mark();`);
    }
    expect(answer.status).toBe(202);
    expect(answer.body).toEqual({ symbol: 'HANG-PERP', price: '80', liquidated: [], sweep: 'pending' });
    expect((await markRow('HANG-PERP'))!.version).toBe('2');
    // The sweep is finished once recovery has recorded it (after the liquidation commits).
    const ms = await untilSwept('HANG-PERP');
    expect(await liquidationsOf(id)).toEqual(['admin-env']); // the mark's actor
    expect(await markRow('HANG-PERP')).toEqual({ price: '80', version: '2', swept_version: '2' });
    expect((await api('GET', '/markets/HANG-PERP')).body.mark_price).toBe('80');
    expect(await reconcile(te.engine)).toEqual([]);
    console.log(`redis paused after the commit: 202, swept ${ms.toFixed(0)} ms after redis resumed`);
  });

  it('whose liquidations PostgreSQL refuses answers 202, keeps the engine not ready, and is swept when they can commit', async () => {
    const id = await endangeredAccount('REFUSE-PERP');
    await te.db.sql.unsafe(`
      CREATE FUNCTION ${te.iso.schema}.refuse_liquidation() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected: liquidations refused'; END $$;
      CREATE TRIGGER refuse_liquidation BEFORE INSERT ON ${te.iso.schema}.liquidations FOR EACH ROW EXECUTE FUNCTION ${te.iso.schema}.refuse_liquidation();`);
    let dropped = false;
    const drop = async () => {
      if (dropped) return;
      dropped = true;
      await te.db.sql.unsafe(`DROP TRIGGER refuse_liquidation ON ${te.iso.schema}.liquidations; DROP FUNCTION ${te.iso.schema}.refuse_liquidation();`);
    };
    try {
      const answer = await api('POST', '/mark-price', { symbol: 'REFUSE-PERP', price: '80' });
      expect(answer.status).toBe(202);
      expect(answer.body.sweep).toBe('pending');
      expect(await markRow('REFUSE-PERP')).toEqual({ price: '80', version: '2', swept_version: '1' });
      expect((await api('GET', '/ready')).status).toBe(503);
      // The recovery watch keeps trying while the refusal lasts.
      await recoveryPasses(te.engine, 2);
      expect(await liquidationsOf(id)).toEqual([]);
      await drop();
      // The sweep is finished once recovery has recorded it (after the liquidation commits).
      const ms = await untilSwept('REFUSE-PERP');
      expect(await liquidationsOf(id)).toEqual(['admin-env']);
      expect(await markRow('REFUSE-PERP')).toEqual({ price: '80', version: '2', swept_version: '2' });
      expect((await api('GET', '/ready')).status).toBe(200);
      expect(await reconcile(te.engine)).toEqual([]);
      console.log(`liquidations refused: 202, swept ${ms.toFixed(0)} ms after they could commit`);
    } finally {
      await drop();
    }
  });
});

describe('a committed mark and a crash', () => {
  it('is swept by the restarted engine before it reports ready', async () => {
    // Its own schema and engine process; the machine's Redis.
    const cIso = newIsolation();
    const cDb = inspector(cIso);
    const env = isolationEnv(cIso);
    let child = new EngineProcess(env, await freePort());
    try {
      await child.start();
      const b = child.base;
      await send(b, 'POST', '/mark-price', { symbol: 'CRASH-PERP', price: '100' });
      const ids = [1, 2, 3];
      for (const id of ids) {
        await send(b, 'POST', `/accounts/${id}/deposit`, { amount: '25' });
        expect((await send(b, 'POST', '/trade', { account_id: id, symbol: 'CRASH-PERP', side: 'BUY', quantity: '1', price: '100' })).status).toBe(200);
      }
      await cDb.sql.unsafe(`
        CREATE FUNCTION ${cIso.schema}.refuse_liquidation() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected'; END $$;
        CREATE TRIGGER refuse_liquidation BEFORE INSERT ON ${cIso.schema}.liquidations FOR EACH ROW EXECUTE FUNCTION ${cIso.schema}.refuse_liquidation();`);
      const answer = await send(b, 'POST', '/mark-price', { symbol: 'CRASH-PERP', price: '80' });
      expect(answer.status).toBe(202);
      await child.kill(); // SIGKILL with the sweep unfinished
      await cDb.sql.unsafe(`DROP TRIGGER refuse_liquidation ON ${cIso.schema}.liquidations; DROP FUNCTION ${cIso.schema}.refuse_liquidation();`);
      const [pending] = await cDb.sql<{ version: string; swept_version: string }[]>`SELECT version::text, swept_version::text FROM mark_prices WHERE symbol = 'CRASH-PERP'`;
      expect(pending).toEqual({ version: '2', swept_version: '1' });
      child = new EngineProcess(env, child.port);
      await child.start(); // returns once /ready answers 200
      const found = await cDb.sql<{ account_id: string }[]>`SELECT account_id::text FROM liquidations ORDER BY account_id`;
      expect(found.map((r) => Number(r.account_id))).toEqual(ids);
      const [swept] = await cDb.sql<{ swept_version: string }[]>`SELECT swept_version::text FROM mark_prices WHERE symbol = 'CRASH-PERP'`;
      expect(swept!.swept_version).toBe('2');
      const checker = await startEngine(cIso);
      try {
        expect(await reconcile(checker.engine)).toEqual([]);
      } finally {
        await checker.close();
      }
      console.log(`crash with a sweep pending: the restarted engine liquidated ${found.length} of ${ids.length} endangered accounts before ready`);
    } finally {
      await child.kill();
      await cDb.destroy();
    }
  });
});
