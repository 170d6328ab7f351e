/**
 * A funding event cut short by SIGKILL is finished by the next engine before
 * it reports ready: every holder is charged exactly once, at the recorded
 * mark, and Redis equals the ledger.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { D } from '../../src/domain/decimal.js';
import { reconcile as differences } from '../../src/services/reconcile.js';
import { inspector, isolationEnv, newIsolation, startEngine, type Inspector, type Isolation } from '../helpers/engine.js';
import { send } from '../helpers/http.js';
import { EngineProcess, freePort } from '../helpers/processes.js';

const HOLDERS = 10_000;
const SYMBOL = 'CRASH-PERP';
const MARK = '50000';
const RATE = '0.0003';

let iso: Isolation;
let engine: EngineProcess;
let db: Inspector;

/** Account g: 20,000 deposited, (1 + g mod 1000) / 1000 BTC at the mark, long if g is even: as ledger rows. */
const quantityOf = (g: number) => new D(1 + (g % 1000)).div(1000).times(g % 2 === 0 ? 1 : -1);

beforeAll(async () => {
  iso = newIsolation();
  engine = new EngineProcess({ ...isolationEnv(iso), LOG_LEVEL: process.env.DEBUG_CRASH ? 'info' : 'warn' }, await freePort());
  await engine.start(); // applies the migrations
  await engine.terminate();
  db = inspector(iso);
  const sql = db.sql;
  await sql`INSERT INTO markets (symbol) VALUES (${SYMBOL})`;
  await sql`INSERT INTO mark_prices (symbol, price, swept_version) VALUES (${SYMBOL}, ${MARK}::numeric, 1)`;
  await sql`INSERT INTO ledger (account_id, seq, kind, amount, balance) SELECT g, 1, 'DEPOSIT', 20000, 20000 FROM generate_series(1, ${HOLDERS}::int) g`;
  await sql`
    INSERT INTO ledger (account_id, seq, kind, symbol, side, quantity, price, realised_pnl, position_quantity, position_entry_price, equity, balance, fee, liquidity)
    SELECT g, 2, 'TRADE', ${SYMBOL}, CASE WHEN g % 2 = 0 THEN 'BUY' ELSE 'SELL' END, q, ${MARK}::numeric, 0,
           CASE WHEN g % 2 = 0 THEN q ELSE -q END, ${MARK}::numeric, 20000, 20000, 0, 'taker'
    FROM generate_series(1, ${HOLDERS}::int) g, LATERAL (SELECT ((1 + g % 1000) / 1000.0)::numeric AS q) x`;
  // Redis forgets everything: the next start rebuilds it from the ledger.
  const redis = new Redis(iso.redisUrl);
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${iso.prefix}:*`, 'COUNT', 5000);
    if (keys.length) await redis.unlink(...keys);
    cursor = next;
  } while (cursor !== '0');
  redis.disconnect();
  await engine.start();
}, 120_000);

afterAll(async () => {
  if (process.env.DEBUG_CRASH) console.log(engine?.stderr.slice(-5000));
  await engine?.kill();
  await db?.destroy();
});

const chargedRows = async () => (await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ledger WHERE kind = 'FUNDING' AND funding_id = 'crash-1'`)[0]!.n;

describe('SIGKILL during a 10,000-holder funding', () => {
  it('is finished on restart: every holder charged exactly once, totals exact, reconcile clean', async () => {
    const body = { symbol: SYMBOL, rate: RATE, funding_id: 'crash-1' };
    const first = send(engine.base, 'POST', '/funding', body, 60_000).catch(() => 'no answer' as const);
    // Kill it midway: once some holders are charged and before all are.
    let atKill = 0;
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      atKill = await chargedRows();
      if (atKill >= 500) break;
      await new Promise((r) => setTimeout(r, 2));
    }
    await engine.kill();
    expect(await first).toBe('no answer');
    const afterKill = await chargedRows();
    expect(atKill).toBeGreaterThan(0);
    expect(afterKill).toBeLessThan(HOLDERS);
    const [state] = await db.sql<{ status: string }[]>`SELECT status FROM fundings WHERE funding_id = 'crash-1'`;
    expect(state!.status).toBe('running');

    const restartStarted = performance.now();
    await engine.start(); // ready only once recovery has finished the event
    const restartMs = performance.now() - restartStarted;
    const [done] = await db.sql<{ status: string; accounts: string }[]>`SELECT status, accounts FROM fundings WHERE funding_id = 'crash-1'`;
    expect(done).toMatchObject({ status: 'done', accounts: String(HOLDERS) });

    const rows = await db.sql<{ account_id: string; amount: string; n: number }[]>`
      SELECT account_id, min(amount)::text AS amount, count(*)::int AS n FROM ledger
      WHERE kind = 'FUNDING' AND funding_id = 'crash-1' GROUP BY account_id`;
    expect(rows).toHaveLength(HOLDERS);
    let paid = new D(0);
    let received = new D(0);
    for (const r of rows) {
      expect(r.n).toBe(1);
      const want = quantityOf(Number(r.account_id)).times(MARK).times(RATE).neg();
      expect(new D(r.amount).eq(want), `account ${r.account_id}`).toBe(true);
      if (want.isNeg()) paid = paid.minus(want);
      else received = received.plus(want);
    }
    // Every holder's balance is 20,000 plus its one payment, in PostgreSQL and in Redis.
    const heads = await db.sql<{ account_id: string; balance: string }[]>`
      SELECT DISTINCT ON (account_id) account_id, balance FROM ledger ORDER BY account_id, seq DESC`;
    for (const h of heads) expect(new D(h.balance).eq(quantityOf(Number(h.account_id)).times(MARK).times(RATE).neg().plus(20000))).toBe(true);

    const again = await send(engine.base, 'POST', '/funding', body);
    expect(again.status).toBe(200);
    expect(again.body).toEqual({
      symbol: SYMBOL,
      rate: RATE,
      funding_id: 'crash-1',
      mark_price: MARK,
      accounts: HOLDERS,
      paid: paid.toString(),
      received: received.toString(),
      liquidated: [],
    });
    expect(await chargedRows()).toBe(HOLDERS);

    const checker = await startEngine(iso);
    try {
      expect(await differences(checker.engine)).toEqual([]);
    } finally {
      await checker.close();
    }
    console.info(
      `SIGKILL during funding: ${atKill} of ${HOLDERS} holders charged when the kill was sent, ${afterKill} committed after it; ` +
        `restart with recovery finishing the event: ${(restartMs / 1000).toFixed(1)} s; every holder charged once, reconcile clean`,
    );
  }, 120_000);
});
