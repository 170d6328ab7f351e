/**
 * POST /trades is durable like POST /trade: the engine, a child process, is
 * SIGKILLed while batches are in flight. Every item answered 200 is in
 * PostgreSQL exactly once; resending the batches that got no answer books
 * each of their items at most once (the ones committed before the kill
 * answer with their first result), and Redis equals what the ledger implies.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inspector, isolationEnv, newIsolation, startEngine, type Inspector, type Isolation } from '../helpers/engine.js';
import { send } from '../helpers/http.js';
import { EngineProcess, freePort } from '../helpers/processes.js';
import { reconcile as differences } from '../../src/services/reconcile.js';

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

async function reconcile(): Promise<string[]> {
  const checker = await startEngine(iso);
  try {
    return await differences(checker.engine);
  } finally {
    await checker.close();
  }
}

interface SentBatch {
  readonly trades: { account_id: number; client_order_id: string }[];
  status: number | 'no answer';
  results: { status: number; trade_id?: number }[] | 'no answer';
}

const ACCOUNTS = 30;
const BATCH = 25;

describe('SIGKILL with batches in flight', () => {
  it('loses no item answered 200, books none twice, and a resend of the unanswered batches books each item once', async () => {
    expect((await send(engine.base, 'POST', '/mark-price', { symbol: 'BTC-PERP', price: 50000 })).status).toBe(200);
    for (let id = 1; id <= ACCOUNTS; id++) expect((await send(engine.base, 'POST', `/accounts/${id}/deposit`, { amount: 1_000_000 })).status).toBe(200);

    const sent: SentBatch[] = [];
    let stopped = false;
    let n = 0;
    // 8 clients, each sending batches of BATCH items over several accounts (some accounts twice in one batch).
    const clients = Array.from({ length: 8 }, async () => {
      while (!stopped && sent.length < 2000) {
        const trades = Array.from({ length: BATCH }, () => {
          const k = ++n;
          return { account_id: 1 + ((k * 7) % ACCOUNTS), symbol: 'BTC-PERP', side: k % 2 ? 'SELL' : 'BUY', quantity: '0.001', price: 50000, client_order_id: `b-${k}` };
        });
        const batch: SentBatch = { trades, status: 'no answer', results: 'no answer' };
        sent.push(batch);
        try {
          const res = await send(engine.base, 'POST', '/trades', { trades }, 5000);
          batch.status = res.status;
          if (res.status === 200) batch.results = res.body.results;
        } catch {
          stopped = true; // the engine is gone
        }
      }
    });
    const answeredItems = () => sent.reduce((sum, b) => sum + (b.results === 'no answer' ? 0 : b.results.length), 0);
    const deadline = Date.now() + 20_000;
    while (answeredItems() < 300 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await engine.kill(); // batches in flight: some of their items committed, none answered
    stopped = true;
    await Promise.all(clients);

    expect(sent.every((b) => b.status === 200 || b.status === 'no answer')).toBe(true);
    const answered = sent.filter((b) => b.results !== 'no answer');
    const unanswered = sent.filter((b) => b.results === 'no answer');
    const acked = answered.flatMap((b) => b.trades.map((t, i) => ({ ...t, result: (b.results as { status: number; trade_id?: number }[])[i]! })));
    expect(acked.length).toBeGreaterThanOrEqual(300);
    expect(acked.every((a) => a.result.status === 200)).toBe(true);
    expect(unanswered.length).toBeGreaterThan(0);

    await engine.start();
    const rows = await db.sql<{ client_order_id: string; trade_id: string }[]>`SELECT client_order_id, trade_id FROM trades WHERE client_order_id IS NOT NULL`;
    const booked = new Map(rows.map((r) => [r.client_order_id, Number(r.trade_id)]));
    expect(booked.size).toBe(rows.length); // each client order id once (each is used on one account)
    // Every item answered 200 is there, as answered.
    for (const a of acked) expect(booked.get(a.client_order_id), a.client_order_id).toBe(a.result.trade_id);
    expect(await reconcile()).toEqual([]);
    const unansweredItems = unanswered.flatMap((b) => b.trades);
    const committedUnanswered = unansweredItems.filter((t) => booked.has(t.client_order_id)).length;
    console.info(
      `SIGKILL with batches of ${BATCH} in flight: batches sent ${sent.length}, answered ${answered.length} (${acked.length} items, all 200), ` +
        `unanswered ${unanswered.length} (${unansweredItems.length} items, ${committedUnanswered} of them committed before the kill)`,
    );

    // The unanswered batches, resent: committed items answer with their first result, the rest book now.
    for (const b of unanswered) {
      const res = await send(engine.base, 'POST', '/trades', { trades: b.trades }, 10_000);
      expect(res.status).toBe(200);
      res.body.results.forEach((r: { status: number; trade_id: number }, i: number) => {
        expect(r.status).toBe(200);
        const first = booked.get(b.trades[i]!.client_order_id);
        if (first !== undefined) expect(r.trade_id).toBe(first);
      });
    }
    const [counts] = await db.sql<{ n: number; distinct: number }[]>`
      SELECT count(*)::int AS n, count(DISTINCT client_order_id)::int AS distinct FROM trades WHERE client_order_id IS NOT NULL`;
    expect(counts!.n).toBe(counts!.distinct);
    expect(counts!.n).toBe(acked.length + unansweredItems.length);
    expect(await reconcile()).toEqual([]);
  });
});
