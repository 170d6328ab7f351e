/**
 * Funding's bulk path (AccountRunner.runMany): holders charged chunk by
 * chunk (one read, one statement, batched applies), and everything the bulk
 * path cannot do safely handed to the one-by-one path. Every holder is
 * charged exactly once whatever else writes the same accounts meanwhile:
 * trades through the same engine (its per-account queue), trades through a
 * second engine (the ledger's key), another writer's lock.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { D, type Dec } from '../../src/domain/decimal.js';
import { reconcile as differences } from '../../src/services/reconcile.js';
import { acquireAccount, releaseAccount } from '../../src/store/account-lock.js';
import { readAccount } from '../../src/store/account-state.js';
import { startEngine, startTestEngine, untilEnginesSeeEachOther, type EngineFixture, type TestEngine } from '../helpers/engine.js';
import { listen, send } from '../helpers/http.js';

/** What the engine logged as it finished each funding event ('funding paid'). */
const paidLogs: { fundingId: string; accounts: number; bulk: number; skipped: number }[] = [];
const capture = new Writable({
  write(chunk: Buffer, _encoding, done) {
    for (const line of chunk.toString().split('\n')) {
      if (line.includes('"funding paid"')) paidLogs.push(JSON.parse(line));
    }
    done();
  },
});
const paidLog = (fundingId: string) => paidLogs.find((l) => l.fundingId === fundingId);

let f: EngineFixture;

beforeAll(async () => {
  // Chunks of 50: a few hundred holders make several chunks, in flight together.
  f = await startTestEngine({ log: pino({ level: 'info' }, capture), env: { FUNDING_CHUNK: '50' } });
});
afterAll(async () => {
  await f?.close();
});

/**
 * `n` holders of `symbol`, written as the engine writes them (a deposit of
 * 20,000 and a trade at the mark, one account each, long if even) straight
 * into the ledger, then put into Redis by a rebuild. Returns their ids and
 * signed quantities.
 */
async function seedHolders(symbol: string, n: number, mark: string): Promise<Map<number, Dec>> {
  const holders = new Map<number, Dec>();
  const ids: number[] = [];
  for (let i = 0; i < n; i++) {
    const id = f.freshAccount();
    ids.push(id);
    holders.set(id, new D(1 + (id % 7)).div(100).times(id % 2 === 0 ? 1 : -1));
  }
  const sql = f.db.sql;
  await sql`INSERT INTO markets (symbol) VALUES (${symbol})`;
  await sql`INSERT INTO mark_prices (symbol, price, swept_version) VALUES (${symbol}, ${mark}::numeric, 1)`;
  await sql`INSERT INTO ledger (account_id, seq, kind, amount, balance) SELECT g, 1, 'DEPOSIT', 20000, 20000 FROM unnest(${ids}::bigint[]) g`;
  await sql`
    INSERT INTO ledger (account_id, seq, kind, symbol, side, quantity, price, realised_pnl, position_quantity, position_entry_price, equity, balance, fee, liquidity)
    SELECT g, 2, 'TRADE', ${symbol}, CASE WHEN g % 2 = 0 THEN 'BUY' ELSE 'SELL' END, q, ${mark}::numeric, 0,
           CASE WHEN g % 2 = 0 THEN q ELSE -q END, ${mark}::numeric, 20000, 20000, 0, 'taker'
    FROM unnest(${ids}::bigint[]) g, LATERAL (SELECT ((1 + g % 7) / 100.0)::numeric AS q) x`;
  // As after a loss of Redis: wiped, then rebuilt under the rebuild lock. (A bare rebuild() would race the
  // recovery watch, which finds the boot marker gone midway and rebuilds again behind the test's back.)
  await f.db.wipe();
  await f.engine.recovery.rebuildOrWait();
  return holders;
}

/** Each holder's FUNDING rows of the event: exactly one, of −q · m · r. */
async function expectChargedOnce(fundingId: string, holders: Map<number, Dec>, mark: string, rate: string): Promise<void> {
  const rows = await f.db.sql<{ account_id: string; amount: string; n: number }[]>`
    SELECT account_id, min(amount)::text AS amount, count(*)::int AS n FROM ledger
    WHERE kind = 'FUNDING' AND funding_id = ${fundingId} GROUP BY account_id ORDER BY account_id`;
  expect(rows.map((r) => Number(r.account_id))).toEqual([...holders.keys()].sort((a, b) => a - b));
  for (const r of rows) {
    expect(r.n, `account ${r.account_id}`).toBe(1);
    const q = holders.get(Number(r.account_id))!;
    expect(new D(r.amount).eq(q.times(mark).times(rate).neg()), `account ${r.account_id}`).toBe(true);
  }
}

/** Redis holds each account's last ledger row (seq and balance). */
async function expectRedisEqualsLedger(ids: Iterable<number>): Promise<void> {
  const heads = await f.db.sql<{ account_id: string; seq: string; balance: string }[]>`
    SELECT DISTINCT ON (account_id) account_id, seq, balance FROM ledger WHERE account_id = ANY(${[...ids]}::bigint[]) ORDER BY account_id, seq DESC`;
  for (const h of heads) {
    const stored = await readAccount(f.engine.redis, f.keys, Number(h.account_id));
    expect({ id: h.account_id, seq: stored.seq, balance: stored.balance.toString() }).toEqual({
      id: h.account_id,
      seq: Number(h.seq),
      balance: new D(h.balance).toString(),
    });
  }
}

describe('funding on the bulk path', () => {
  it('charges every holder once, in bulk, with Redis and the risk index equal to the ledger', async () => {
    const holders = await seedHolders('BULK-PERP', 400, '50000');
    const answer = await f.post('/funding', { symbol: 'BULK-PERP', rate: '0.0001', funding_id: 'bulk-1' });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(answer.body.accounts).toBe(400);
    // Nothing else wrote these accounts: every one went through the bulk path.
    expect(paidLog('bulk-1')).toMatchObject({ accounts: 400, bulk: 400 });
    await expectChargedOnce('bulk-1', holders, '50000', '0.0001');
    await expectRedisEqualsLedger(holders.keys());
    expect(await differences(f.engine)).toEqual([]);
  });

  it('charges a cached holder on top of its cached state, and leaves the cache holding the charged state', async () => {
    // Accounts booked through this engine are in its account cache; the peek sends only their seq.
    await f.put('/markets/CACHE-PERP', {});
    await f.mark('CACHE-PERP', 40000);
    const long = f.freshAccount();
    const short = f.freshAccount();
    for (const id of [long, short]) await f.deposit(id, 10000);
    expect((await f.trade(long, 'CACHE-PERP', 'BUY', '0.05', 40000)).status).toBe(200);
    expect((await f.trade(short, 'CACHE-PERP', 'SELL', '0.05', 40000)).status).toBe(200);
    const answer = await f.post('/funding', { symbol: 'CACHE-PERP', rate: '0.001', funding_id: 'cache-1' });
    // 0.05 · 40000 · 0.001 = 2: the long pays 2, the short receives 2
    expect(answer.body).toMatchObject({ accounts: 2, paid: '2', received: '2' });
    expect(paidLog('cache-1')).toMatchObject({ accounts: 2, bulk: 2 });
    // The next trade decides on the cached state (no read): it must be the charged one. A stale
    // entry would decide at the old seq, collide at the ledger's key and mark the account contended.
    expect((await f.trade(long, 'CACHE-PERP', 'BUY', '0.01', 40000)).status).toBe(200);
    expect(await f.db.redis.exists(f.keys.account(long).contended)).toBe(0);
    const rows = await f.db.sql<{ seq: string; kind: string; balance: string }[]>`
      SELECT seq, kind, balance FROM ledger WHERE account_id = ${long} ORDER BY seq`;
    expect(rows.map((r) => [Number(r.seq), r.kind, new D(r.balance).toString()])).toEqual([
      [1, 'DEPOSIT', '10000'],
      [2, 'TRADE', '10000'],
      [3, 'FUNDING', '9998'],
      [4, 'TRADE', '9998'],
    ]);
    await expectRedisEqualsLedger([long, short]);
  });

  it('charges a holder locked by another writer through the one-by-one path, once the lock is free', async () => {
    const holders = await seedHolders('LOCK-PERP', 120, '30000');
    const locked = [...holders.keys()][70]!;
    const token = 'another-writer';
    const got = await acquireAccount(f.db.redis, f.keys, { accountId: locked, token, ttlMs: 20_000, waiterId: 'test', clientOrderId: null });
    expect(got.acquired).toBe(true);
    const pending = f.post('/funding', { symbol: 'LOCK-PERP', rate: '-0.0002', funding_id: 'lock-1' });
    const charged = async () =>
      (await f.db.sql<{ account_id: string }[]>`SELECT account_id FROM ledger WHERE kind = 'FUNDING' AND funding_id = 'lock-1'`).map((r) => Number(r.account_id));
    // Every other holder is charged while the lock is held; the locked one is not.
    for (let deadline = Date.now() + 20_000; (await charged()).length < 119 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
    const meanwhile = await charged();
    expect(meanwhile).toHaveLength(119);
    expect(meanwhile).not.toContain(locked);
    await releaseAccount(f.db.redis, f.keys, locked, token);
    const answer = await pending;
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(answer.body.accounts).toBe(120);
    expect(paidLog('lock-1')).toMatchObject({ accounts: 120, bulk: 119 });
    await expectChargedOnce('lock-1', holders, '30000', '-0.0002');
    await expectRedisEqualsLedger(holders.keys());
    expect(await differences(f.engine)).toEqual([]);
  });

  it('sends a holder whose ledger is ahead of Redis (another writer committed, not yet applied) through the one-by-one path: caught up, charged once', async () => {
    const holders = await seedHolders('AHEAD-PERP', 60, '20000');
    const ahead = [...holders.keys()][17]!;
    // Another process's deposit, committed but not applied: Redis still says seq 2.
    await f.db.sql`INSERT INTO ledger (account_id, seq, kind, amount, balance) VALUES (${ahead}, 3, 'DEPOSIT', 5, 20005)`;
    const answer = await f.post('/funding', { symbol: 'AHEAD-PERP', rate: '0.0005', funding_id: 'ahead-1' });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(answer.body.accounts).toBe(60);
    // Its bulk row (seq 3) collided at the ledger's key; the one-by-one path caught Redis up and charged it at seq 4.
    expect(paidLog('ahead-1')).toMatchObject({ accounts: 60, bulk: 59 });
    await expectChargedOnce('ahead-1', holders, '20000', '0.0005');
    const rows = await f.db.sql<{ seq: string; kind: string; balance: string }[]>`SELECT seq, kind, balance FROM ledger WHERE account_id = ${ahead} ORDER BY seq`;
    const delta = holders.get(ahead)!.times('20000').times('0.0005').neg();
    expect(rows.map((r) => [Number(r.seq), r.kind, new D(r.balance).toString()])).toEqual([
      [1, 'DEPOSIT', '20000'],
      [2, 'TRADE', '20000'],
      [3, 'DEPOSIT', '20005'],
      [4, 'FUNDING', delta.plus(20005).toString()],
    ]);
    await expectRedisEqualsLedger(holders.keys());
    expect(await differences(f.engine)).toEqual([]);
  });

  it('charges each holder exactly once while holders trade meanwhile, through this engine and through another', async () => {
    const holders = await seedHolders('BUSY-PERP', 400, '50000');
    const other: TestEngine = await startEngine(f.iso);
    try {
      const base = await f.listen();
      const otherBase = await listen(other.app);
      await untilEnginesSeeEachOther(f.db.redis, f.keys, 2);
      const ids = [...holders.keys()];
      // Every fourth holder adds to its position four times while the event runs, half of them through
      // each engine (adding, not closing: a holder that is flat when its turn comes owes nothing).
      const traders = ids.filter((_, i) => i % 4 === 0);
      const trades = traders.flatMap((id, i) =>
        [0, 1, 2, 3].map(() =>
          send(
            i % 2 === 0 ? base : otherBase,
            'POST',
            '/trade',
            { account_id: id, symbol: 'BUSY-PERP', side: holders.get(id)!.isPos() ? 'BUY' : 'SELL', quantity: '0.01', price: '50000' },
            30_000,
          ),
        ),
      );
      const answer = await send(base, 'POST', '/funding', { symbol: 'BUSY-PERP', rate: '0.0003', funding_id: 'busy-1' }, 60_000);
      const traded = await Promise.all(trades);
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      expect(answer.body.accounts).toBe(400);
      // On a crowded host a trade may outrun a store's deadline (503); the histories below count what was booked.
      expect(traded.filter((t) => t.status !== 200 && t.status !== 503).map((t) => t.body)).toEqual([]);
      const answered = new Map<number, number>();
      trades.forEach((_, k) => {
        if (traded[k]!.status === 200) answered.set(traders[Math.floor(k / 4)]!, (answered.get(traders[Math.floor(k / 4)]!) ?? 0) + 1);
      });

      // Each holder's history, replayed: one FUNDING row, charged on the position it held at that
      // point (before or after its trades), its balance the previous row's plus the payment.
      const rows = await f.db.sql<{ account_id: string; seq: string; kind: string; amount: string | null; balance: string; position_quantity: string | null }[]>`
        SELECT account_id, seq, kind, amount, balance, position_quantity FROM ledger WHERE account_id = ANY(${ids}::bigint[]) ORDER BY account_id, seq`;
      const byAccount = new Map<number, (typeof rows)[number][]>();
      for (const r of rows) byAccount.set(Number(r.account_id), [...(byAccount.get(Number(r.account_id)) ?? []), r]);
      for (const id of ids) {
        const history = byAccount.get(id)!;
        expect(history.map((r) => Number(r.seq))).toEqual(history.map((_, i) => i + 1));
        // The seeded trade, every trade answered 200, and perhaps one answered 503 whose commit landed.
        const booked = history.filter((r) => r.kind === 'TRADE').length - 1;
        expect(booked, `account ${id}`).toBeGreaterThanOrEqual(answered.get(id) ?? 0);
        expect(booked, `account ${id}`).toBeLessThanOrEqual(traders.includes(id) ? 4 : 0);
        const fundings = history.map((r, i) => [r, i] as const).filter(([r]) => r.kind === 'FUNDING');
        expect(fundings, `account ${id}`).toHaveLength(1);
        const [row, i] = fundings[0]!;
        const position = new D([...history.slice(0, i)].reverse().find((r) => r.kind === 'TRADE')!.position_quantity!);
        expect(new D(row.position_quantity!).eq(position), `account ${id}`).toBe(true);
        expect(new D(row.amount!).eq(position.times('50000').times('0.0003').neg()), `account ${id}`).toBe(true);
        expect(new D(row.balance).eq(new D(history[i - 1]!.balance).plus(row.amount!)), `account ${id}`).toBe(true);
      }
      await expectRedisEqualsLedger(ids);
      expect(await differences(f.engine)).toEqual([]);
      const log = paidLog('busy-1')!;
      console.info(`funding over 400 holders while 100 of them traded 4 times each: ${log.bulk} charged in bulk, ${400 - log.bulk} one by one`);
    } finally {
      await other.close();
    }
  }, 60_000);
});

describe('GroupCommitter.commitUnlessPresent', () => {
  it('commits every row but those colliding with the ledger, by (account_id, seq) or by (funding_id, account_id)', async () => {
    const [a, b, c] = [f.freshAccount(), f.freshAccount(), f.freshAccount()];
    for (const id of [a, b, c]) await f.deposit(id, 100);
    const row = (accountId: number, seq: number, fundingId: string) => ({
      accountId,
      seq,
      kind: 'FUNDING' as const,
      symbol: 'BULK-PERP',
      price: '50000',
      positionQuantity: '1',
      amount: '-1',
      balance: '99',
      fundingId,
    });
    // b's seq 2 is taken by its deposit of 5; c is charged by 'once-1' already
    await f.deposit(b, 5);
    expect(await f.engine.committer.commitUnlessPresent([row(c, 2, 'once-1')])).toEqual([{ accountId: c, seq: 2 }]);
    const written = await f.engine.committer.commitUnlessPresent([row(a, 2, 'once-1'), row(b, 2, 'once-1'), row(c, 3, 'once-1')]);
    expect(written).toEqual([{ accountId: a, seq: 2 }]);
    const rows = await f.db.sql<{ account_id: string; seq: string; kind: string }[]>`
      SELECT account_id, seq, kind FROM ledger WHERE account_id = ANY(${[a, b, c]}::bigint[]) ORDER BY account_id, seq`;
    expect(rows.map((r) => [Number(r.account_id), Number(r.seq), r.kind])).toEqual([
      [a, 1, 'DEPOSIT'],
      [a, 2, 'FUNDING'],
      [b, 1, 'DEPOSIT'],
      [b, 2, 'DEPOSIT'],
      [c, 1, 'DEPOSIT'],
      [c, 2, 'FUNDING'],
    ]);
  });
});
