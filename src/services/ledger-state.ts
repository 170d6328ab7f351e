/**
 * What Redis should hold according to PostgreSQL: each account's state as its
 * last ledger rows record, the latest marks and every market. A rebuild writes
 * it; reconcile compares Redis with it.
 */
import { D, type Dec } from '../domain/decimal.js';
import type { Position } from '../domain/margin.js';
import { toEntry, type EntryRecord } from '../store/ledger.js';
import { allMarkets } from '../store/markets.js';
import type { Sql } from '../store/postgres.js';
import { storedClientOrder } from './ledger-sync.js';

/** What the ledger says an account is now. */
export interface ExpectedAccount {
  seq: number;
  balance: Dec;
  positions: Map<string, Position>;
  clientOrders: Map<string, string>;
}

export interface Expected {
  readonly accounts: Map<number, ExpectedAccount>;
  readonly marks: Map<string, { price: string; version: number }>;
  readonly markets: { symbol: string; json: string; version: number }[];
}

/**
 * The state the ledger's last rows record, and the latest marks. With
 * `recentOrdersMs` above 0, only client orders booked within that window
 * (what a rebuild puts back, for a retention limit); otherwise all of them.
 */
export async function expectedState(sql: Sql, recentOrdersMs = 0): Promise<Expected> {
  const accounts = new Map<number, ExpectedAccount>();
  const heads = await sql<{ account_id: string; seq: string; balance: string }[]>`
    SELECT DISTINCT ON (account_id) account_id, seq, balance FROM ledger ORDER BY account_id, seq DESC`;
  for (const h of heads) {
    accounts.set(Number(h.account_id), { seq: Number(h.seq), balance: new D(h.balance), positions: new Map(), clientOrders: new Map() });
  }
  const positions = await sql<{ account_id: string; symbol: string; position_quantity: string; position_entry_price: string | null }[]>`
    SELECT DISTINCT ON (account_id, symbol) account_id, symbol, position_quantity, position_entry_price
    FROM ledger WHERE kind = 'TRADE' ORDER BY account_id, symbol, seq DESC`;
  for (const p of positions) {
    const q = new D(p.position_quantity);
    if (q.isZero()) continue;
    accounts.get(Number(p.account_id))!.positions.set(p.symbol, { quantity: q, entryPrice: new D(p.position_entry_price!) });
  }
  const orders =
    recentOrdersMs > 0
      ? await sql<EntryRecord[]>`
          SELECT * FROM ledger WHERE client_order_id IS NOT NULL AND created_at > now() - make_interval(secs => ${recentOrdersMs / 1000})`
      : await sql<EntryRecord[]>`SELECT * FROM ledger WHERE client_order_id IS NOT NULL`;
  for (const o of orders) accounts.get(Number(o.account_id))!.clientOrders.set(o.client_order_id!, storedClientOrder(toEntry(o)));
  const marks = new Map<string, { price: string; version: number }>();
  for (const m of await sql<{ symbol: string; price: string; version: string }[]>`SELECT symbol, price, version FROM mark_prices`) {
    marks.set(m.symbol, { price: new D(m.price).toString(), version: Number(m.version) });
  }
  return { accounts, marks, markets: await allMarkets(sql) };
}
