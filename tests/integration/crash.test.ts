/**
 * Crash consistency with real processes: the engine is a child process that
 * is SIGKILLed under load, and Redis is a private redis-server that is
 * killed and restarted empty. Afterwards every acknowledged operation is in
 * PostgreSQL exactly once and Redis equals what the ledger implies.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inspector, isolationEnv, newIsolation, startEngine, type Inspector, type Isolation } from '../helpers/engine.js';
import { send } from '../helpers/http.js';
import { EngineProcess, PrivateRedis, freePort } from '../helpers/processes.js';
import { until } from '../helpers/until.js';
import { reconcile as differences } from '../../src/services/reconcile.js';

let iso: Isolation;
let redis: PrivateRedis;
let engine: EngineProcess;
let db: Inspector;

beforeAll(async () => {
  const base = newIsolation();
  redis = new PrivateRedis(await freePort());
  await redis.start();
  iso = { ...base, redisUrl: redis.url };
  engine = new EngineProcess(
    { ...isolationEnv(iso), LOG_LEVEL: process.env.DEBUG_CRASH ? 'info' : 'warn' },
    await freePort(),
  );
  await engine.start();
  db = inspector(iso);
}, 60_000);

afterAll(async () => {
  if (process.env.DEBUG_CRASH) console.log(engine?.stderr.slice(-5000));
  await engine?.kill();
  await db?.destroy();
  await redis?.kill();
});

/** Reconciles through an in-process engine on the same schema and Redis (no recovery of its own). */
async function reconcile(): Promise<string[]> {
  const checker = await startEngine(iso);
  try {
    return await differences(checker.engine);
  } finally {
    await checker.close();
  }
}

/**
 * Funds `ids` and lists BTC-PERP at 50000 (posting it again at that price
 * changes nothing), so a test does not rest on the book an earlier one built.
 */
async function fundedBook(ids: number[]): Promise<void> {
  expect((await send(engine.base, 'POST', '/mark-price', { symbol: 'BTC-PERP', price: 50000 })).status).toBe(200);
  for (const id of ids) expect((await send(engine.base, 'POST', `/accounts/${id}/deposit`, { amount: 1_000_000 })).status).toBe(200);
}

interface Sent {
  readonly accountId: number;
  readonly clientOrderId: string;
  readonly body: Record<string, unknown>;
  status: number | 'no answer';
  tradeId?: number;
}

/** Bounded load: `clients` loops sending trades with unique client order ids, until `stop()` or `maxPerClient`. */
function loadUntilStopped(clients: number, accounts: number, maxPerClient: number) {
  const sent: Sent[] = [];
  let stopped = false;
  const run = Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let i = 0; i < maxPerClient && !stopped; i++) {
        const accountId = 1 + ((c * 7 + i) % accounts);
        const clientOrderId = `c${c}-${i}`;
        const body = { account_id: accountId, symbol: 'BTC-PERP', side: i % 2 ? 'SELL' : 'BUY', quantity: '0.001', price: 50000, client_order_id: clientOrderId };
        const s: Sent = { accountId, clientOrderId, body, status: 'no answer' };
        sent.push(s);
        try {
          const res = await send(engine.base, 'POST', '/trade', body, 3000);
          s.status = res.status;
          if (res.status === 200) s.tradeId = res.body.trade_id;
        } catch {
          stopped = true; // the engine is gone
        }
      }
    }),
  );
  return { sent, stop: () => (stopped = true), done: run };
}

describe('SIGKILL under load', () => {
  it('loses no acknowledged trade, books none twice, and restarts with Redis equal to the ledger', async () => {
    await fundedBook(Array.from({ length: 20 }, (_, i) => i + 1));

    const load = loadUntilStopped(16, 20, 2000);
    // Kill once a good number is acknowledged (bounded), with requests still in flight.
    const deadline = Date.now() + 15_000;
    while (load.sent.filter((s) => s.status === 200).length < 100 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await engine.kill(); // mid-flight: some requests are committed but never answered
    load.stop();
    await load.done;
    const acked = load.sent.filter((s) => s.status === 200);
    expect(acked.length).toBeGreaterThan(50);

    await engine.start();
    const rows = await db.sql<{ client_order_id: string; trade_id: string }[]>`SELECT client_order_id, trade_id FROM trades WHERE client_order_id IS NOT NULL`;
    const booked = new Map(rows.map((r) => [r.client_order_id, Number(r.trade_id)]));
    // every acknowledged trade is there, exactly once (client_order_id is unique per account)
    for (const s of acked) expect(booked.get(s.clientOrderId)).toBe(s.tradeId);
    expect(await reconcile()).toEqual([]);
    const unansweredCount = load.sent.filter((s) => s.status === 'no answer').length;
    console.info(
      `SIGKILL under load: sent ${load.sent.length}, acknowledged ${acked.length}, unanswered ${unansweredCount}, ` +
        `booked in PostgreSQL ${booked.size} (every acknowledged one, once)`,
    );

    // Retrying every request that got no answer books each at most once:
    // a committed one returns its first result, the others book now.
    const unanswered = load.sent.filter((s) => s.status === 'no answer');
    for (const s of unanswered) {
      const res = await send(engine.base, 'POST', '/trade', s.body);
      expect(res.status).toBe(200);
      if (booked.has(s.clientOrderId)) expect(res.body.trade_id).toBe(booked.get(s.clientOrderId));
    }
    const [counts] = await db.sql<{ n: number; distinct: number }[]>`
      SELECT count(*)::int AS n, count(DISTINCT (account_id, client_order_id))::int AS distinct FROM trades WHERE client_order_id IS NOT NULL`;
    const { n, distinct } = counts!;
    expect(n).toBe(distinct);
    expect(n).toBe(booked.size + unanswered.filter((s) => !booked.has(s.clientOrderId)).length);
    expect(await reconcile()).toEqual([]);
  });
});

describe('SIGKILL at several points of the commit/apply cycle', () => {
  /**
   * Mixed load on accounts of their own: trades (with client order ids),
   * deposits and withdrawals, each cash movement with an amount no other
   * request uses, so its ledger row can be found. The engine is killed after
   * a different number of acknowledgements each round, so the kill lands at
   * different points between commit and apply.
   */
  it('keeps every acknowledged trade, deposit and withdrawal exactly once, round after round', async () => {
    const ACCOUNTS = [101, 102, 103, 104, 105, 106, 107, 108];
    for (const id of ACCOUNTS) await send(engine.base, 'POST', `/accounts/${id}/deposit`, { amount: 1_000_000 });
    type Op = { kind: 'TRADE' | 'DEPOSIT' | 'WITHDRAWAL'; accountId: number; key: string; status: number | 'no answer'; tradeId?: number };
    const ops: Op[] = [];
    let n = 0;
    const totals = { rounds: 0, sent: 0, acked: 0, unanswered: 0 };
    let booked = new Map<string, number>();
    for (const killAfter of [3, 17, 41, 66]) {
      let stopped = false;
      const round: Op[] = [];
      const clients = Array.from({ length: 12 }, async (_, c) => {
        for (let i = 0; i < 500 && !stopped; i++) {
          const k = ++n;
          const accountId = ACCOUNTS[(c + i) % ACCOUNTS.length]!;
          const kind = (['TRADE', 'TRADE', 'DEPOSIT', 'WITHDRAWAL'] as const)[k % 4]!;
          // amounts unique per request: the fraction is the request number (ending in 1: no trailing zero to normalise away)
          const amount = `${1 + (k % 7)}.${String(k).padStart(6, '0')}1`;
          // A quarter of the trades carry a client order id; the rest none,
          // and are found by a quantity no other request uses.
          const withId = k % 8 === 0;
          const quantity = withId ? '0.001' : `0.001${String(k).padStart(6, '0')}1`;
          const key = kind !== 'TRADE' ? amount : withId ? `soak-${k}` : `q:${quantity}`;
          const op: Op = { kind, accountId, key, status: 'no answer' };
          round.push(op);
          const trade = { account_id: accountId, symbol: 'BTC-PERP', side: k % 3 ? 'BUY' : 'SELL', quantity, price: 50000 };
          const [path, body] =
            kind === 'TRADE'
              ? ['/trade', withId ? { ...trade, client_order_id: key } : trade]
              : [`/accounts/${accountId}/${kind === 'DEPOSIT' ? 'deposit' : 'withdraw'}`, { amount }];
          try {
            const res = await send(engine.base, 'POST', path, body, 3000);
            op.status = res.status;
            if (kind === 'TRADE' && res.status === 200) op.tradeId = res.body.trade_id;
          } catch {
            stopped = true;
          }
        }
      });
      const deadline = Date.now() + 10_000;
      while (round.filter((o) => o.status === 200).length < killAfter && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
      await engine.kill();
      stopped = true;
      await Promise.all(clients);
      await engine.start();
      ops.push(...round);
      totals.rounds++;
      totals.sent += round.length;
      totals.acked += round.filter((o) => o.status === 200).length;
      totals.unanswered += round.filter((o) => o.status === 'no answer').length;
      expect(round.every((o) => o.status === 200 || o.status === 'no answer')).toBe(true);

      const rows = await db.sql<
        { kind: string; account_id: string; client_order_id: string | null; quantity: string | null; amount: string | null; entry_id: string }[]
      >`
        SELECT kind, account_id, client_order_id, quantity::text, amount::text, entry_id FROM ledger WHERE account_id IN ${db.sql(ACCOUNTS)} AND seq > 1`;
      const rowKey = (r: (typeof rows)[number]) => (r.kind === 'TRADE' ? (r.client_order_id ?? `q:${r.quantity}`) : r.amount);
      const count = new Map<string, number>();
      for (const r of rows) {
        const key = `${r.kind}|${r.account_id}|${rowKey(r)}`;
        count.set(key, (count.get(key) ?? 0) + 1);
      }
      booked = count;
      const keyOf = (o: Op) => `${o.kind}|${o.accountId}|${o.key}`;
      const sentKeys = new Set(ops.map(keyOf));
      // nothing booked that was not sent, nothing booked twice
      for (const [key, times] of count) {
        expect(sentKeys.has(key), `unexpected row ${key}`).toBe(true);
        expect(times, key).toBe(1);
      }
      // every acknowledged operation is booked (a trade under the id it was answered with)
      for (const o of ops.filter((x) => x.status === 200)) expect(count.get(keyOf(o)), keyOf(o)).toBe(1);
      const tradeIds = new Map(rows.filter((r) => r.kind === 'TRADE').map((r) => [rowKey(r), Number(r.entry_id)]));
      for (const o of ops.filter((x) => x.kind === 'TRADE' && x.status === 200)) expect(tradeIds.get(o.key)).toBe(o.tradeId);
      expect(await reconcile()).toEqual([]);
    }
    const committedUnanswered = ops.filter((o) => o.status === 'no answer' && booked.has(`${o.kind}|${o.accountId}|${o.key}`)).length;
    console.info(
      `SIGKILL soak: ${totals.rounds} kills, sent ${totals.sent}, acknowledged ${totals.acked}, unanswered ${totals.unanswered} ` +
        `(${committedUnanswered} of them committed); found in PostgreSQL ${booked.size}: every acknowledged trade, deposit and ` +
        'withdrawal exactly once, Redis equal to the ledger after each restart',
    );
    expect(totals.acked).toBeGreaterThan(100);
  }, 90_000);
});

describe('Redis killed and restarted empty', () => {
  it('is rebuilt from PostgreSQL by the running engine, which then serves the same state', async () => {
    await fundedBook([1, 2, 3]);
    for (const id of [1, 2, 3]) {
      const res = await send(engine.base, 'POST', '/trade', { account_id: id, symbol: 'BTC-PERP', side: 'BUY', quantity: '0.001', price: 50000 });
      expect(res.status).toBe(200);
    }
    const before = await Promise.all([1, 2, 3].map((id) => send(engine.base, 'GET', `/positions/${id}`)));
    await redis.kill();
    expect((await send(engine.base, 'POST', '/trade', { account_id: 1, symbol: 'BTC-PERP', side: 'BUY', quantity: '0.001', price: 50000 })).status).toBe(503);
    await redis.start();
    await until(() => send(engine.base, 'GET', '/ready'), { ok: (r) => r.status === 200, timeoutMs: 15_000, everyMs: 100, what: 'ready after the rebuild' });
    expect((await send(engine.base, 'GET', '/ready')).status).toBe(200);
    const after = await Promise.all([1, 2, 3].map((id) => send(engine.base, 'GET', `/positions/${id}`)));
    expect(after.map((r) => r.body)).toEqual(before.map((r) => r.body));
    expect(await reconcile()).toEqual([]);
  });
});

describe('SIGTERM', () => {
  it('finishes in-flight requests, flushes, and exits 0', async () => {
    await fundedBook([1, 2, 3, 4, 5]);
    const inFlight = Array.from({ length: 20 }, (_, i) =>
      send(engine.base, 'POST', '/trade', { account_id: 1 + (i % 5), symbol: 'BTC-PERP', side: 'BUY', quantity: '0.001', price: 50000, client_order_id: `term-${i}` }).catch(
        () => null,
      ),
    );
    await new Promise((r) => setTimeout(r, 5));
    const code = await engine.terminate();
    const results = await Promise.all(inFlight);
    expect(code).toBe(0);
    // every request the engine accepted before closing got its answer, and each 200 is committed
    const ok = results.filter((r) => r?.status === 200);
    for (const r of ok) {
      const [row] = await db.sql`SELECT 1 FROM trades WHERE trade_id = ${r!.body.trade_id}`;
      expect(row).toBeDefined();
    }
    expect(await reconcile()).toEqual([]);
    await engine.start();
  });
});

describe('PostgreSQL cut off from an engine process', () => {
  it('answers 503 within a second, applies nothing, and resumes by itself when the connection returns', async () => {
    await fundedBook([2]);
    const { TcpProxy, targetOf, viaProxy } = await import('../helpers/tcp-proxy.js');
    const pg = targetOf(iso.databaseUrl, 5432);
    const proxy = new TcpProxy(pg.host, pg.port);
    const proxyPort = await proxy.start();
    const viaPg = new EngineProcess(
      { ...isolationEnv(iso), DATABASE_URL: viaProxy(iso.databaseUrl, proxyPort) },
      await freePort(),
    );
    await viaPg.start();
    try {
      const trade = (i: number) =>
        send(viaPg.base, 'POST', '/trade', { account_id: 2, symbol: 'BTC-PERP', side: 'BUY', quantity: '0.001', price: 50000, client_order_id: `cut-${i}` });
      expect((await trade(0)).status).toBe(200);
      const rows = (await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ledger`)[0]!.n;
      const before = await send(viaPg.base, 'GET', '/positions/2');

      proxy.cut();
      const during = await Promise.all([trade(1), send(viaPg.base, 'POST', '/accounts/2/deposit', { amount: 1 }), send(viaPg.base, 'POST', '/mark-price', { symbol: 'BTC-PERP', price: 50001 })]);
      for (const r of during) {
        expect(r.status).toBe(503);
        expect(r.ms).toBeLessThan(1000);
      }
      expect((await send(viaPg.base, 'GET', '/ready')).status).toBe(503);
      expect((await send(viaPg.base, 'GET', '/positions/2')).body).toEqual(before.body);

      await proxy.restore();
      const after = await until(() => trade(1), { ok: (r) => r.status === 200, everyMs: 100, what: 'the trade booked again' });
      expect(after.status).toBe(200);
      expect((await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ledger`)[0]!.n).toBe(rows + 1);
      expect((await send(viaPg.base, 'GET', '/ready')).status).toBe(200);
    } finally {
      await viaPg.kill();
      await proxy.close();
    }
    expect(await reconcile()).toEqual([]);
  });
});
