/**
 * The event stream's read from PostgreSQL (store/events.ts) against a real
 * schema: a read resuming inside a long ledger starts at its position in
 * the index of every table (the ledger's trades and the margin calls
 * included), also under a prepared statement's generic plan (which
 * postgres.js's prepared statements get after a few runs), so its cost does
 * not grow with the tables; margin calls come in (transaction, table, row)
 * order, after the trade of their own transaction.
 */
import postgres from 'postgres';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { eventsAfter, latestPosition, parsePosition, formatPosition, type EventPosition } from '../../src/store/events.js';
import { migrate } from '../../src/store/migrate.js';
import { inspector, newIsolation, type Inspector, type Isolation } from '../helpers/engine.js';

let iso: Isolation;
let db: Inspector;

beforeAll(async () => {
  iso = newIsolation();
  db = inspector(iso);
  await migrate(db.sql, iso.schema);
  // 20 transactions of 1,000 margin calls each, before the trades.
  for (let t = 1; t <= 20; t++) {
    await db.sql`
      INSERT INTO margin_calls (account_id, status, previous_status, equity, initial_margin, maintenance_margin, marks, cause, symbol, mark_version)
      SELECT g, 'margin_call', 'healthy', 1, 2, 0.5, '{"BTC-PERP":"50000"}', 'tick', 'BTC-PERP', ${t} FROM generate_series(1, 1000) AS g`;
  }
  // 40 transactions of 1,000 trades each.
  for (let t = 1; t <= 40; t++) {
    await db.sql`
      INSERT INTO ledger (account_id, seq, kind, symbol, side, quantity, price, realised_pnl, position_quantity, position_entry_price, balance)
      SELECT g, ${t}, 'TRADE', 'BTC-PERP', 'BUY', 1, 50000, 0, 1, 50000, 0 FROM generate_series(1, 1000) AS g`;
  }
  await db.sql`ANALYZE ledger`;
  await db.sql`ANALYZE margin_calls`;
}, 60_000);

afterAll(async () => {
  await db?.destroy();
});

/** Every plan node of an EXPLAIN (FORMAT JSON) tree. */
function nodes(plan: any): any[] {
  return [plan, ...((plan.Plans as any[] | undefined) ?? []).flatMap(nodes)];
}

it('reads from the position on, under a generic plan too, without filtering the rows before it', async () => {
  const [last] = await db.sql<{ xid: string; id: string }[]>`SELECT xid::text, entry_id::text AS id FROM ledger ORDER BY xid DESC, entry_id DESC LIMIT 1 OFFSET 10`;
  const after: EventPosition = { xid: last!.xid, table: 1, id: last!.id };
  // The statement eventsAfter sends, and its parameters, as postgres.js passes them.
  let statement: { query: string; parameters: unknown[] } | null = null;
  const spy = postgres(iso.databaseUrl, {
    max: 1,
    onnotice: () => {},
    connection: { search_path: iso.schema },
    debug: (_connection, query, parameters) => (statement = { query, parameters }),
  });
  try {
    const events = await eventsAfter(spy as never, after, 500);
    expect(events).toHaveLength(10);
    expect(events.map((e) => e.position.id)).toEqual(events.map((e) => e.position.id).sort((a, b) => Number(a) - Number(b)));
    const { query, parameters } = statement!;
    const plans = await spy.begin(async (tx) => {
      await tx.unsafe('SET LOCAL plan_cache_mode = force_generic_plan');
      await tx.unsafe(`PREPARE events_read AS ${query}`);
      const args = parameters.map((p) => `'${String(p).replace(/'/g, "''")}'`).join(', ');
      const [row] = await tx.unsafe(`EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE events_read(${args})`);
      await tx.unsafe('DEALLOCATE events_read');
      return row!['QUERY PLAN'] as any[];
    });
    const all = nodes(plans[0].Plan);
    const ledgerScans = all.filter((n) => n['Relation Name'] === 'ledger');
    const callScans = all.filter((n) => n['Relation Name'] === 'margin_calls');
    expect(ledgerScans.length).toBeGreaterThan(0);
    expect(callScans.length).toBeGreaterThan(0);
    for (const scan of [...ledgerScans, ...callScans]) {
      // The position bounds the index scan: no row before it is read and thrown away.
      expect(scan['Rows Removed by Filter'] ?? 0).toBe(0);
      expect(scan['Actual Rows']).toBeLessThanOrEqual(10);
    }
  } finally {
    await spy.end();
  }
});

it('reads a margin call after the trade of its own transaction, before a later transaction\'s rows, and resumes between them', async () => {
  const start = await latestPosition(db.sql);
  await db.sql.begin(async (tx) => {
    await tx`INSERT INTO ledger (account_id, seq, kind, symbol, side, quantity, price, realised_pnl, position_quantity, position_entry_price, balance)
             VALUES (5001, 1, 'TRADE', 'BTC-PERP', 'SELL', 1, 35000, -15000, 1, 50000, 7000)`;
    await tx`INSERT INTO margin_calls (account_id, status, previous_status, equity, initial_margin, maintenance_margin, marks, cause, symbol, seq)
             VALUES (5001, 'margin_call', 'healthy', 7000, 10000, 5000, '{"BTC-PERP":"50000"}', 'trade', 'BTC-PERP', 1)`;
  });
  await db.sql`INSERT INTO margin_calls (account_id, status, previous_status, equity, initial_margin, maintenance_margin, marks, cause, symbol, mark_version)
               VALUES (5002, 'liquidatable', 'healthy', 1, 10, 5, '{"BTC-PERP":"44000"}', 'tick', 'BTC-PERP', 999)`;
  await db.sql`INSERT INTO ledger (account_id, seq, kind, symbol, side, quantity, price, realised_pnl, position_quantity, position_entry_price, balance)
               VALUES (5002, 1, 'TRADE', 'BTC-PERP', 'SELL', 1, 44000, 0, 0, NULL, 0)`;
  const events = await eventsAfter(db.sql, start, 500);
  expect(events.map((e) => [e.type, 'accountId' in e ? e.accountId : null])).toEqual([
    ['trade', '5001'],
    ['margin_call', '5001'],
    ['margin_call', '5002'],
    ['trade', '5002'],
  ]);
  const [, call, second] = events;
  expect(call).toMatchObject({ type: 'margin_call', status: 'margin_call', previousStatus: 'healthy', equity: '7000', initialMargin: '10000', maintenanceMargin: '5000', cause: 'trade', marks: { 'BTC-PERP': '50000' } });
  expect(call!.position.xid).toBe(events[0]!.position.xid);
  expect(second!.position.table).toBe(4);
  // An id of a margin call parses back, and resuming after it gives exactly what followed.
  const resumeAt = parsePosition(formatPosition(call!.position))!;
  expect((await eventsAfter(db.sql, resumeAt, 500)).map((e) => e.type)).toEqual(['margin_call', 'trade']);
  // The newest position lies past the margin calls already committed.
  expect(await eventsAfter(db.sql, await latestPosition(db.sql), 500)).toEqual([]);
});
