/**
 * Atomic per account: concurrent requests on one account, over many
 * sockets and through two engine instances sharing one Redis and one
 * PostgreSQL schema, behave as if run one at a time.
 *
 * The two instances live in this test process but share nothing in memory:
 * each has its own Redis and PostgreSQL connections, its own per-account
 * queue and its own lock identity, so they contend exactly as two processes do.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { D, type Dec } from '../../src/domain/decimal.js';
import { isLiquidatable } from '../../src/domain/liquidation.js';
import { applyTrade, decideTrade, flatRules, type AccountState, type Side } from '../../src/domain/margin.js';
import { startEngine, startTestEngine, untilEnginesSeeEachOther, type EngineFixture, type TestEngine } from '../helpers/engine.js';
import { listen, send } from '../helpers/http.js';

let a: EngineFixture;
let b: TestEngine;
let baseA: string;
let baseB: string;

beforeAll(async () => {
  a = await startTestEngine();
  b = await startEngine(a.iso);
  baseA = await a.listen();
  baseB = await listen(b.app);
});
afterAll(async () => {
  await b?.close();
  await a?.close();
});

const rates = flatRules({ initial: new D('0.2'), maintenance: new D('0.1') });

interface Row {
  seq: string;
  kind: string;
  symbol: string | null;
  side: Side | null;
  quantity: string | null;
  price: string | null;
  realised_pnl: string | null;
  amount: string | null;
  balance: string;
  entry_id: string;
  liquidation_id: string | null;
}

/**
 * Replays the ledger with the pure math, checking each trade's margin on the
 * state it really followed, and that a liquidation only closed an account
 * that was under maintenance.
 */
function replay(rows: Row[], marks: Map<string, Dec>): AccountState {
  let state: AccountState = { balance: new D(0), positions: new Map() };
  rows.forEach((r, i) => {
    expect(Number(r.seq)).toBe(i + 1); // no gaps, no duplicates
    if (r.kind === 'DEPOSIT') state = { ...state, balance: state.balance.plus(r.amount!) };
    else if (r.kind === 'WITHDRAWAL') state = { ...state, balance: state.balance.minus(r.amount!) };
    else if (r.kind === 'INSURANCE') state = { ...state, balance: state.balance.plus(r.amount!) };
    else if (r.liquidation_id !== null) {
      // A reduce-only trade (always accepted) can leave the account under maintenance: it is then closed at the marks.
      if (rows[i - 1]?.liquidation_id !== r.liquidation_id) expect(isLiquidatable(state, marks, rates), `liquidation at seq ${r.seq}`).toBe(true);
      expect(new D(r.price!).eq(marks.get(r.symbol!)!)).toBe(true);
      state = applyTrade(state, { symbol: r.symbol!, side: r.side!, quantity: new D(r.quantity!), price: new D(r.price!) }).after;
    } else {
      const fill = { symbol: r.symbol!, side: r.side!, quantity: new D(r.quantity!), price: new D(r.price!) };
      const decision = decideTrade(state, fill, marks, rates);
      expect(decision.accepted, `trade at seq ${r.seq} passed its margin check on stale state`).toBe(true);
      expect(decision.outcome.realisedPnl.toString()).toBe(new D(r.realised_pnl!).toString());
      state = applyTrade(state, fill).after;
    }
    expect(state.balance.toString()).toBe(new D(r.balance).toString());
  });
  return state;
}

describe('concurrent trades on one account through two engines', () => {
  it('loses no update: responses, Redis and the PostgreSQL ledger all agree', async () => {
    const id = 1;
    await send(baseA, 'POST', '/mark-price', { symbol: 'BTC-PERP', price: 50000 });
    await send(baseA, 'POST', '/mark-price', { symbol: 'ETH-PERP', price: 3000 });
    await send(baseA, 'POST', `/accounts/${id}/deposit`, { amount: 20000 });

    // 400 mixed trades, sizes chosen so that some breach margin and are refused.
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const orders = Array.from({ length: 400 }, (_, i) => ({
      account_id: id,
      symbol: rnd() < 0.6 ? 'BTC-PERP' : 'ETH-PERP',
      side: rnd() < 0.5 ? 'BUY' : 'SELL',
      quantity: (Math.floor(rnd() * 40) + 1) / 100, // 0.01 … 0.40
      price: 2900 + Math.floor(rnd() * 200) + (rnd() < 0.6 ? 47000 : 0),
      via: i % 2 ? baseB : baseA,
    }));
    const results = await Promise.all(orders.map(({ via, ...o }) => send(via, 'POST', '/trade', o)));

    const statuses = new Set(results.map((r) => r.status));
    expect([...statuses].every((s) => s === 200 || s === 422)).toBe(true);
    const accepted = results.filter((r) => r.status === 200);
    expect(accepted.length).toBeGreaterThan(50);

    const rows = await a.db.sql<Row[]>`SELECT * FROM ledger WHERE account_id = ${id} ORDER BY seq`;
    // Every accepted response is exactly one ledger row; the only other rows
    // are the deposit and liquidations (checked by the replay below).
    const liquidationRows = rows.filter((r) => r.liquidation_id !== null || r.kind === 'INSURANCE');
    expect(rows.length).toBe(accepted.length + 1 + liquidationRows.length);
    expect(new Set(rows.filter((r) => r.kind === 'TRADE' && r.liquidation_id === null).map((r) => Number(r.entry_id)))).toEqual(
      new Set(accepted.map((r) => r.body.trade_id)),
    );
    // Each response reports the balance its own row recorded.
    const bySeqBalance = new Map(rows.map((r) => [Number(r.entry_id), new D(r.balance).toString()]));
    for (const r of accepted) expect(r.body.balance).toBe(bySeqBalance.get(r.body.trade_id));

    // Replaying the ledger in order re-passes every margin check and lands on Redis's state.
    const marks = new Map([
      ['BTC-PERP', new D(50000)],
      ['ETH-PERP', new D(3000)],
    ]);
    const replayed = replay(rows, marks);
    const view = (await send(baseB, 'GET', `/positions/${id}`)).body;
    expect(view.balance).toBe(replayed.balance.toString());
    expect(view.positions.map((p: { symbol: string; quantity: string; entry_price: string }) => [p.symbol, p.quantity, p.entry_price])).toEqual(
      [...replayed.positions].sort(([x], [y]) => (x < y ? -1 : 1)).map(([s, p]) => [s, p.quantity.toString(), p.entryPrice.toString()]),
    );
    // The final position is the signed sum of the accepted quantities (and of any liquidation's closing trades).
    for (const symbol of ['BTC-PERP', 'ETH-PERP']) {
      const fills = [
        ...accepted.map((r) => r.body as { symbol: string; side: Side; quantity: string }),
        ...liquidationRows.filter((r) => r.kind === 'TRADE').map((r) => ({ symbol: r.symbol!, side: r.side!, quantity: r.quantity! })),
      ];
      const net = fills
        .filter((f) => f.symbol === symbol)
        .reduce((acc, f) => (f.side === 'BUY' ? acc.plus(f.quantity) : acc.minus(f.quantity)), new D(0));
      const held = view.positions.find((p: { symbol: string }) => p.symbol === symbol)?.quantity ?? '0';
      expect(held).toBe(net.toString());
    }
  });

  it('accepts exactly the affordable number of trades in a race at the margin limit', async () => {
    const id = 2;
    await send(baseA, 'POST', '/mark-price', { symbol: 'XRP-PERP', price: 100 });
    await send(baseB, 'POST', `/accounts/${id}/deposit`, { amount: 1000 });
    // Each BUY 10 @ 100 adds notional 1000 → IM 200; equity stays 1000 → exactly 5 fit.
    const results = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        send(i % 2 ? baseA : baseB, 'POST', '/trade', { account_id: id, symbol: 'XRP-PERP', side: 'BUY', quantity: 10, price: 100 }),
      ),
    );
    expect(results.filter((r) => r.status === 200).length).toBe(5);
    expect(results.filter((r) => r.status === 422).length).toBe(55);
    const view = (await send(baseA, 'GET', `/positions/${id}`)).body;
    expect(view).toMatchObject({ balance: '1000', equity: '1000', initial_margin: '1000' });
    expect(view.positions[0].quantity).toBe('50');
    const [row] = await a.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM trades WHERE account_id = ${id}`;
    expect(row!.n).toBe(5);
  });

  it('books a client order id once when the same order races through both engines', async () => {
    const id = 3;
    await send(baseA, 'POST', '/mark-price', { symbol: 'BTC-PERP', price: 50000 });
    await send(baseA, 'POST', `/accounts/${id}/deposit`, { amount: 100000 });
    const order = { account_id: id, symbol: 'BTC-PERP', side: 'BUY', quantity: '0.01', price: 50000, client_order_id: 'dup-1' };
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => send(i % 2 ? baseA : baseB, 'POST', '/trade', order)));
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect(new Set(results.map((r) => r.body.trade_id)).size).toBe(1);
    const [row] = await a.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM trades WHERE account_id = ${id}`;
    expect(row!.n).toBe(1);
  });

  it("decides on the other engine's latest booking, never on a process's cached copy", async () => {
    const id = 5;
    await untilEnginesSeeEachOther(a.db.redis, a.keys, 2);
    await send(baseA, 'POST', '/mark-price', { symbol: 'SOL-PERP', price: 100 });
    await send(baseA, 'POST', `/accounts/${id}/deposit`, { amount: 1000 });
    // A books (and caches) the account; B then uses up the rest of its margin;
    // A's next trade must be checked against B's booking, not A's cached state.
    const buy = { account_id: id, symbol: 'SOL-PERP', side: 'BUY', quantity: 20, price: 100 }; // IM 400 each
    expect((await send(baseA, 'POST', '/trade', buy)).status).toBe(200);
    expect((await send(baseB, 'POST', '/trade', buy)).status).toBe(200);
    const third = await send(baseA, 'POST', '/trade', buy);
    expect(third.status).toBe(422); // IM 1200 > equity 1000 once B's trade counts
    expect(third.body.error.code).toBe('INSUFFICIENT_MARGIN');
    // A deposit through B, then a trade through A that only fits with it.
    await send(baseB, 'POST', `/accounts/${id}/deposit`, { amount: 200 });
    const fourth = await send(baseA, 'POST', '/trade', buy);
    expect(fourth.status).toBe(200);
    expect(fourth.body).toMatchObject({ balance: '1200', position: { symbol: 'SOL-PERP', quantity: '60', entry_price: '100' } });
    const rows = await a.db.sql<{ seq: string; kind: string }[]>`SELECT seq, kind FROM ledger WHERE account_id = ${id} ORDER BY seq`;
    expect(rows.map((r) => [Number(r.seq), r.kind])).toEqual([
      [1, 'DEPOSIT'],
      [2, 'TRADE'],
      [3, 'TRADE'],
      [4, 'DEPOSIT'],
      [5, 'TRADE'],
    ]);
    // With two engines on the key prefix, TRUSTED_PATH=auto reads before
    // deciding: each of A's reads saw B's booking, so no write collided at the
    // ledger's key and fell back to the lock.
    expect(await a.db.redis.exists(a.engine.keys.account(id).contended)).toBe(0);
  });

  it('keeps deposits and withdrawals exact under concurrency', async () => {
    const id = 4;
    await send(baseA, 'POST', `/accounts/${id}/deposit`, { amount: '0.000000000000000001' });
    const ops = Array.from({ length: 200 }, (_, i) =>
      i % 4 === 3
        ? send(i % 2 ? baseA : baseB, 'POST', `/accounts/${id}/withdraw`, { amount: '0.3' })
        : send(i % 2 ? baseA : baseB, 'POST', `/accounts/${id}/deposit`, { amount: '0.1' }),
    );
    const results = await Promise.all(ops);
    let expected = new D('0.000000000000000001');
    for (const [i, r] of results.entries()) {
      if (r.status !== 200) continue;
      expected = i % 4 === 3 ? expected.minus('0.3') : expected.plus('0.1');
    }
    expect(results.filter((r, i) => i % 4 !== 3 && r.status !== 200)).toEqual([]);
    expect((await send(baseB, 'GET', `/positions/${id}`)).body.balance).toBe(expected.toString());
  });
});

/**
 * The trusted path: an operation on an account this process has cached, with
 * marks a Redis reply confirmed within MARKS_MAX_AGE_MS, reads nothing before
 * it decides. Engine T trusts for a whole second, so every such operation
 * here certainly takes that path, even beside engine O, a plain second
 * process (TRUSTED_PATH=on; 'auto' would leave the path while O is there).
 */
describe('trusted cached state (no read before the decision)', () => {
  let t: EngineFixture;
  let o: TestEngine;
  let baseT: string;
  let baseO: string;
  const TRUST_MS = 1000;

  beforeAll(async () => {
    t = await startTestEngine({ env: { MARKS_MAX_AGE_MS: String(TRUST_MS), TRUSTED_PATH: 'on' } });
    o = await startEngine(t.iso);
    baseT = await t.listen();
    baseO = await listen(o.app);
    await send(baseT, 'POST', '/mark-price', { symbol: 'SOL-PERP', price: 100 });
  });
  afterAll(async () => {
    await o?.close();
    await t?.close();
  });

  const buy = (id: number, price = 100) => ({ account_id: id, symbol: 'SOL-PERP', side: 'BUY', quantity: 20, price });
  const kinds = async (id: number) =>
    (await t.db.sql<{ seq: string; kind: string }[]>`SELECT seq, kind FROM ledger WHERE account_id = ${id} ORDER BY seq`).map((r) => [
      Number(r.seq),
      r.kind,
    ]);

  it("refuses, at the ledger's key, an acceptance that rested on a copy another engine made stale", async () => {
    const id = 11;
    await send(baseT, 'POST', `/accounts/${id}/deposit`, { amount: 1000 });
    expect((await send(baseT, 'POST', '/trade', buy(id))).status).toBe(200); // T caches seq 2
    expect((await send(baseO, 'POST', '/trade', buy(id))).status).toBe(200); // seq 3, T does not know
    // On T's copy (20 SOL) the trade fits (IM 800 <= 1000); on the ledger's
    // (40 SOL) it needs IM 1200 > equity 1000. T's commit of seq 3 collides,
    // T catches up and decides again on the latest state.
    const third = await send(baseT, 'POST', '/trade', buy(id));
    expect(third.status).toBe(422);
    expect(third.body.error.details).toEqual({ required: '1200', available: '1000' });
    expect(await t.db.redis.exists(t.engine.keys.account(id).contended)).toBe(1); // the collision happened
    expect(await kinds(id)).toEqual([
      [1, 'DEPOSIT'],
      [2, 'TRADE'],
      [3, 'TRADE'],
    ]);
  });

  it('confirms a refusal on the latest state before answering it', async () => {
    const id = 12;
    await send(baseT, 'POST', `/accounts/${id}/deposit`, { amount: 100 });
    // T caches the account with 100 of equity; O adds 300.
    await send(baseO, 'POST', `/accounts/${id}/deposit`, { amount: 300 });
    // IM of 20 SOL at 100 is 400: refused on T's copy, accepted on the ledger's.
    const res = await send(baseT, 'POST', '/trade', buy(id));
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ balance: '400', position: { quantity: '20', entry_price: '100' } });
  });

  it('never checks a trade against a mark older than one this process posted', async () => {
    const id = 13;
    await send(baseT, 'POST', `/accounts/${id}/deposit`, { amount: 1000 });
    expect((await send(baseT, 'POST', '/trade', buy(id))).status).toBe(200);
    await send(baseT, 'POST', '/mark-price', { symbol: 'SOL-PERP', price: 60 });
    // At mark 100 a buy of 20 more at 60 fits: equity 1000 + 20·(100 − 60) = 1800 >= IM 800.
    // At mark 60 it does not: equity 1000 + 20·(60 − 100) = 200 < IM 20% · 40 · 60 = 480.
    const res = await send(baseT, 'POST', '/trade', buy(id, 60));
    expect(res.status).toBe(422);
    expect(res.body.error.details).toEqual({ required: '480', available: '200' });
    await send(baseT, 'POST', '/mark-price', { symbol: 'SOL-PERP', price: 100 });
  });

  it("sees another engine's mark once MARKS_MAX_AGE_MS has passed", async () => {
    const id = 14;
    await send(baseT, 'POST', `/accounts/${id}/deposit`, { amount: 1000 });
    expect((await send(baseT, 'POST', '/trade', buy(id))).status).toBe(200);
    await send(baseO, 'POST', '/mark-price', { symbol: 'SOL-PERP', price: 60 });
    await new Promise((r) => setTimeout(r, TRUST_MS + 100));
    const res = await send(baseT, 'POST', '/trade', buy(id, 60)); // the same numbers as above
    expect(res.status).toBe(422);
    expect(res.body.error.details).toEqual({ required: '480', available: '200' });
    await send(baseO, 'POST', '/mark-price', { symbol: 'SOL-PERP', price: 100 });
  });
});

describe('TRUSTED_PATH=auto', () => {
  let s: EngineFixture;
  let baseS: string;

  beforeAll(async () => {
    // The default mode; a long marks window so that, while S is alone, its
    // operations on cached accounts certainly take the trusted path.
    s = await startTestEngine({ env: { MARKS_MAX_AGE_MS: '60000' } });
    baseS = await s.listen();
    await send(baseS, 'POST', '/mark-price', { symbol: 'SOL-PERP', price: 100 });
  });
  afterAll(async () => {
    await s?.close();
  });

  const buy = (id: number) => ({ account_id: id, symbol: 'SOL-PERP', side: 'BUY', quantity: 20, price: 100 });

  it('takes the trusted path while it is the only engine: a write it did not see is caught at the ledger key', async () => {
    const id = 21;
    await send(baseS, 'POST', `/accounts/${id}/deposit`, { amount: 1000 });
    expect((await send(baseS, 'POST', '/trade', buy(id))).status).toBe(200); // cached at seq 2
    // A row S never saw (as a crashed writer's committed row would be).
    await s.db.sql`INSERT INTO ledger (account_id, seq, kind, amount, balance) VALUES (${id}, 3, 'DEPOSIT', 500, 1500)`;
    const res = await send(baseS, 'POST', '/trade', buy(id));
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ balance: '1500', position: { quantity: '40' } }); // decided on the deposit it caught up
    expect(await s.db.redis.exists(s.engine.keys.account(id).contended)).toBe(1); // by colliding first
  });

  /** A funded account's first order under `clientOrderId`, answered 200. */
  async function firstOrder(id: number, clientOrderId: string) {
    await send(baseS, 'POST', `/accounts/${id}/deposit`, { amount: 1000 });
    const order = { ...buy(id), quantity: 1, client_order_id: clientOrderId };
    const first = await send(baseS, 'POST', '/trade', order);
    expect(first.status).toBe(200);
    return { order, first };
  }
  const rowsWithOrder = async (id: number, clientOrderId: string) =>
    (await s.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ledger WHERE account_id = ${id} AND client_order_id = ${clientOrderId}`)[0]!.n;

  it('answers a repeated client order id from its first booking, caught by the ledger index, not as a collision', async () => {
    const id = 23;
    const { order, first } = await firstOrder(id, 'trusted-1');
    // The repeat decides on the cached state without reading Redis's record
    // of the order; the ledger's unique index refuses it and the retry answers
    // with the first result.
    const again = await send(baseS, 'POST', '/trade', order);
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);
    const other = await send(baseS, 'POST', '/trade', { ...order, quantity: 2 });
    expect(other.status).toBe(409);
    expect(await rowsWithOrder(id, 'trusted-1')).toBe(1);
    expect(await s.db.redis.exists(s.engine.keys.account(id).contended)).toBe(0); // not taken for another writer
  });

  it("answers a repeated client order id from PostgreSQL when Redis no longer holds its first result", async () => {
    const id = 24;
    const { order, first } = await firstOrder(id, 'lost-1');
    await s.db.redis.del(s.engine.keys.account(id).clientOrders); // Redis forgot it; the ledger did not
    const again = await send(baseS, 'POST', '/trade', order);
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);
    expect((await send(baseS, 'POST', '/trade', { ...order, price: 101 })).status).toBe(409);
    expect(await rowsWithOrder(id, 'lost-1')).toBe(1);
  });

  it('leaves the trusted path once another engine joins the key prefix', async () => {
    const o = await startEngine(s.iso);
    try {
      const baseO = await listen(o.app);
      const id = 22;
      await send(baseS, 'POST', `/accounts/${id}/deposit`, { amount: 1000 });
      expect((await send(baseS, 'POST', '/trade', buy(id))).status).toBe(200);
      await untilEnginesSeeEachOther(s.db.redis, s.keys, 2); // a heartbeat of S has seen O
      expect((await send(baseO, 'POST', '/trade', buy(id))).status).toBe(200);
      const third = await send(baseS, 'POST', '/trade', buy(id));
      expect(third.status).toBe(422);
      // S read before deciding: nothing collided.
      expect(await s.db.redis.exists(s.engine.keys.account(id).contended)).toBe(0);
    } finally {
      await o.close();
    }
  });
});
