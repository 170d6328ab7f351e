/**
 * The event stream's source: trades (ledger), liquidations, market events
 * (marks, listings, parameter changes) and margin calls, read in
 * commit-safe order.
 *
 * Each of those rows carries the id of the transaction that wrote it (`xid`,
 * sql/005_events.sql). A read returns only rows of transactions older than
 * every transaction still running (the snapshot's xmin), ordered by
 * (xid, table, row id): no row can later commit before one already
 * returned, so a reader that resumes after the last position it saw misses
 * nothing. Positions are that triple, written `<xid>-<table>-<row id>`.
 */
import type { Sql } from './postgres.js';

/**
 * The order of the tables within one transaction (a liquidation's closing
 * trades, then its record; a trade, then the margin call it caused). A
 * margin call that must precede a liquidation commits in an earlier
 * transaction.
 */
const TABLE = { trade: 1, liquidation: 2, market: 3, marginCall: 4 } as const;
/** The last table: a position past every row of a transaction uses it. */
const LAST_TABLE = TABLE.marginCall;

export interface EventPosition {
  /** The writing transaction's id (xid8, as decimal text). */
  readonly xid: string;
  readonly table: number;
  readonly id: string;
}

export const ORIGIN: EventPosition = { xid: '0', table: 0, id: '0' };

export const formatPosition = (p: EventPosition) => `${p.xid}-${p.table}-${p.id}`;

/** A position from its text, or null when the text is not one. */
export function parsePosition(text: string): EventPosition | null {
  const m = /^(\d{1,20})-([0-4])-(\d{1,20})$/.exec(text);
  return m === null ? null : { xid: m[1]!, table: Number(m[2]), id: m[3]! };
}

export type StoredEvent =
  | {
      readonly type: 'trade';
      readonly position: EventPosition;
      readonly tradeId: string;
      readonly accountId: string;
      readonly symbol: string;
      readonly side: 'BUY' | 'SELL';
      readonly quantity: string;
      readonly price: string;
      readonly realisedPnl: string;
      readonly liquidationId: string | null;
      /** The trade's fee and liquidity (null on rows booked before fees existed). */
      readonly fee: string | null;
      readonly liquidity: string | null;
      readonly createdAt: Date;
    }
  | {
      readonly type: 'liquidation';
      readonly position: EventPosition;
      readonly liquidationId: string;
      readonly accountId: string;
      readonly reason: string;
      readonly equity: string;
      readonly maintenanceMargin: string;
      readonly shortfall: string;
      readonly positions: unknown;
      readonly mode: string;
      readonly fee: string;
      readonly positionsLeft: unknown;
      readonly createdAt: Date;
    }
  | {
      readonly type: 'market';
      readonly position: EventPosition;
      readonly symbol: string;
      readonly kind: 'listed' | 'mark' | 'params' | 'funding';
      readonly price: string | null;
      readonly previousPrice: string | null;
      readonly changes: unknown;
      readonly createdAt: Date;
    }
  | {
      readonly type: 'margin_call';
      readonly position: EventPosition;
      readonly marginCallId: string;
      readonly accountId: string;
      readonly status: string;
      readonly previousStatus: string;
      readonly equity: string;
      readonly initialMargin: string;
      readonly maintenanceMargin: string;
      readonly marks: unknown;
      readonly cause: string;
      readonly symbol: string;
      readonly fundingId: string | null;
      readonly createdAt: Date;
    };

interface Row {
  t: number;
  xid_text: string;
  id: string;
  account_id: string | null;
  symbol: string | null;
  side: 'BUY' | 'SELL' | null;
  quantity: string | null;
  price: string | null;
  realised_pnl: string | null;
  liquidation_id: string | null;
  reason: string | null;
  equity: string | null;
  maintenance_margin: string | null;
  shortfall: string | null;
  positions: unknown;
  /** A market event's kind; a margin call's status. */
  kind: string | null;
  previous_price: string | null;
  changes: unknown;
  created_at: Date;
}

/**
 * Up to `limit` events after `after`, oldest first, of committed
 * transactions only (see above). Each table is read from its own index.
 */
export async function eventsAfter(sql: Sql, after: EventPosition, limit: number): Promise<StoredEvent[]> {
  // (xid, table, id) > after, for a table whose rank is `t`. Each is a bound
  // of the table's (xid, id) index: a row comparison, not an OR, which a
  // prepared statement's generic plan would apply as a filter to every
  // index entry below the horizon, a cost growing with the table.
  const past = (t: number, id: string) =>
    t > after.table
      ? sql`xid >= ${after.xid}::xid8`
      : t === after.table
        ? sql`(xid, ${sql(id)}) > (${after.xid}::xid8, ${after.id}::bigint)`
        : sql`xid > ${after.xid}::xid8`;
  const rows = await sql<Row[]>`
    WITH horizon AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin)
    SELECT * FROM (
      (SELECT ${TABLE.trade}::int AS t, xid::text AS xid_text, entry_id::text AS id, account_id::text, symbol, side, quantity::text, price::text,
              realised_pnl::text, liquidation_id::text, NULL AS reason, NULL::text AS equity, NULL::text AS maintenance_margin,
              NULL::text AS shortfall, NULL::jsonb AS positions, NULL AS kind, NULL::text AS previous_price,
              jsonb_build_object('fee', fee::text, 'liquidity', liquidity) AS changes, created_at, xid AS x
       FROM ledger WHERE kind = 'TRADE' AND ${past(TABLE.trade, 'entry_id')} AND xid < (SELECT xmin FROM horizon)
       ORDER BY ledger.xid, entry_id LIMIT ${limit})
      UNION ALL
      (SELECT ${TABLE.liquidation}::int, xid::text, liquidation_id::text, account_id::text, NULL, NULL, NULL, NULL,
              NULL, NULL, reason, equity::text, maintenance_margin::text, shortfall::text, positions, NULL, NULL,
              jsonb_build_object('mode', mode, 'fee', fee::text, 'positions_left', positions_left), created_at, xid
       FROM liquidations WHERE ${past(TABLE.liquidation, 'liquidation_id')} AND xid < (SELECT xmin FROM horizon)
       ORDER BY liquidations.xid, liquidation_id LIMIT ${limit})
      UNION ALL
      (SELECT ${TABLE.market}::int, xid::text, event_id::text, NULL, symbol, NULL, NULL, price::text,
              NULL, NULL, NULL, NULL, NULL, NULL, NULL, kind, previous_price::text, changes, created_at, xid
       FROM market_events WHERE ${past(TABLE.market, 'event_id')} AND xid < (SELECT xmin FROM horizon)
       ORDER BY market_events.xid, event_id LIMIT ${limit})
      UNION ALL
      (SELECT ${TABLE.marginCall}::int, xid::text, margin_call_id::text, account_id::text, symbol, NULL, NULL, NULL,
              NULL, NULL, cause, equity::text, maintenance_margin::text, NULL, marks, status, previous_status,
              jsonb_build_object('initial_margin', initial_margin::text, 'funding_id', funding_id), created_at, xid
       FROM margin_calls WHERE ${past(TABLE.marginCall, 'margin_call_id')} AND xid < (SELECT xmin FROM horizon)
       ORDER BY margin_calls.xid, margin_call_id LIMIT ${limit})
    ) AS e
    ORDER BY x, t, id::bigint LIMIT ${limit}`;
  return rows.map(toEvent);
}

/** The extra columns a trade, liquidation or margin call row carries in the `changes` slot of the union. */
type Extra = { fee?: string | null; liquidity?: string | null; mode?: string; positions_left?: unknown; initial_margin?: string; funding_id?: string | null };

function toEvent(r: Row): StoredEvent {
  const position = { xid: r.xid_text, table: r.t, id: r.id };
  const extra = (r.changes ?? {}) as Extra;
  if (r.t === TABLE.trade) {
    return {
      type: 'trade',
      position,
      tradeId: r.id,
      accountId: r.account_id!,
      symbol: r.symbol!,
      side: r.side!,
      quantity: r.quantity!,
      price: r.price!,
      realisedPnl: r.realised_pnl!,
      liquidationId: r.liquidation_id,
      fee: extra.fee ?? null,
      liquidity: extra.liquidity ?? null,
      createdAt: r.created_at,
    };
  }
  if (r.t === TABLE.liquidation) {
    return {
      type: 'liquidation',
      position,
      liquidationId: r.id,
      accountId: r.account_id!,
      reason: r.reason!,
      equity: r.equity!,
      maintenanceMargin: r.maintenance_margin!,
      shortfall: r.shortfall!,
      positions: r.positions,
      mode: extra.mode ?? 'full',
      fee: extra.fee ?? '0',
      positionsLeft: extra.positions_left ?? [],
      createdAt: r.created_at,
    };
  }
  if (r.t === TABLE.marginCall) {
    // The union's slots: status in `kind`, the previous status in `previous_price`, the cause in `reason`, the marks in `positions`.
    return {
      type: 'margin_call',
      position,
      marginCallId: r.id,
      accountId: r.account_id!,
      status: r.kind!,
      previousStatus: r.previous_price!,
      equity: r.equity!,
      initialMargin: extra.initial_margin!,
      maintenanceMargin: r.maintenance_margin!,
      marks: r.positions,
      cause: r.reason!,
      symbol: r.symbol!,
      fundingId: extra.funding_id ?? null,
      createdAt: r.created_at,
    };
  }
  return { type: 'market', position, symbol: r.symbol!, kind: r.kind as 'listed' | 'mark' | 'params' | 'funding', price: r.price, previousPrice: r.previous_price, changes: r.changes, createdAt: r.created_at };
}

/** The position of the newest committed event (where a reader that wants only what follows starts). */
export async function latestPosition(sql: Sql): Promise<EventPosition> {
  const [row] = await sql<{ xmin: string }[]>`SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin`;
  // Every transaction below the horizon is over: starting just under it skips exactly what is already committed.
  return { xid: (BigInt(row!.xmin) - 1n).toString(), table: LAST_TABLE, id: '9223372036854775807' };
}
