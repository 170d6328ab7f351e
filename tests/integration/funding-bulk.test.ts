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
  await f.engine.recovery.rebuild();
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
});
