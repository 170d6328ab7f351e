/**
 * The market registry and the marks: PostgreSQL holds them (the registry,
 * the latest mark per symbol, and each market's history); Redis's marks hash
 * carries what the hot path needs, beside the marks (layout in
 * marks-hash.ts), and a sorted set `marklog` (symbol by the epoch of its last change), so a
 * reader that cached the hash re-reads only the symbols that changed: a
 * tick costs the same whatever the number of other markets. Every index
 * shard holds its own copy of both, in its own slot (see redis.ts).
 */
import { D, type Dec } from '../domain/decimal.js';
import type { LiquidationMode, MarginTier, MarketOverrides, MarketStatus } from '../domain/markets.js';
import type { Sql } from './postgres.js';
import type { KeySpace, RedisClient } from './redis.js';
import { endangeredRanges, accountOf, RiskKeys } from './risk-index.js';
import { runScript, SCRIPTS } from './scripts.js';

/** A market's own parameters as stored (PostgreSQL's `params`, Redis's `$<symbol>`): snake_case, decimals as strings. */
export interface ParamsJson {
  tiers?: { max_notional: string | null; initial_margin_rate: string; maintenance_margin_rate: string }[];
  trade_price_band?: string;
  max_mark_move?: string;
  liquidation_mode?: LiquidationMode;
  liquidation_fee_rate?: string;
  liquidation_buffer?: string;
  maker_fee_rate?: string;
  taker_fee_rate?: string;
  lot_size?: string;
}

/** What Redis keeps of a market: enough for the hot path to decide. */
export interface MarketJson {
  readonly status: MarketStatus;
  readonly params: ParamsJson;
}

const dec = (s: string | undefined): Dec | undefined => (s === undefined ? undefined : new D(s));

export function overridesOf(p: ParamsJson): MarketOverrides {
  const tiers: MarginTier[] | undefined = p.tiers?.map((t) => ({
    maxNotional: t.max_notional === null ? null : new D(t.max_notional),
    initialMarginRate: new D(t.initial_margin_rate),
    maintenanceMarginRate: new D(t.maintenance_margin_rate),
  }));
  const o: { -readonly [K in keyof MarketOverrides]: MarketOverrides[K] } = {};
  if (tiers) o.tiers = tiers;
  if (p.trade_price_band !== undefined) o.tradePriceBand = dec(p.trade_price_band)!;
  if (p.max_mark_move !== undefined) o.maxMarkMove = dec(p.max_mark_move)!;
  if (p.liquidation_mode !== undefined) o.liquidationMode = p.liquidation_mode;
  if (p.liquidation_fee_rate !== undefined) o.liquidationFeeRate = dec(p.liquidation_fee_rate)!;
  if (p.liquidation_buffer !== undefined) o.liquidationBuffer = dec(p.liquidation_buffer)!;
  if (p.maker_fee_rate !== undefined) o.makerFeeRate = dec(p.maker_fee_rate)!;
  if (p.taker_fee_rate !== undefined) o.takerFeeRate = dec(p.taker_fee_rate)!;
  if (p.lot_size !== undefined) o.lotSize = dec(p.lot_size)!;
  return o;
}

// ---- Redis

/** What a publish did: each shard's new marks epoch (0 where it already held these versions or newer), and, for a tick, the accounts it endangers. */
export interface Published {
  readonly epochs: readonly number[];
  readonly endangered: number[];
}

/**
 * Publishes a mark and/or a market definition to every shard's copy of the
 * marks, in parallel (one script call per shard). With `endangered` (a
 * tick's price), each shard's call also bumps its revision and returns the
 * accounts of that shard the mark endangers, read after its write in the
 * same call. Throws if any shard failed (some may hold the new version then:
 * the versions make a publish again harmless).
 */
export async function publishMarket(
  redis: RedisClient,
  keys: KeySpace,
  symbol: string,
  mark: { price: string; version: number } | null,
  market: { json: string; version: number } | null,
  endangered: Dec | null = null,
): Promise<Published> {
  const risk = new RiskKeys(keys);
  const ranges = endangered === null ? null : endangeredRanges(endangered);
  const replies = await Promise.all(
    risk.shards.map(
      (rk) =>
        runScript(redis, SCRIPTS.marksPublish, [
          rk.keys.marks,
          rk.keys.marklog,
          rk.rev,
          rk.long(symbol),
          rk.short(symbol),
          symbol,
          mark?.price ?? '',
          mark?.version ?? 0,
          market?.json ?? '',
          market?.version ?? 0,
          ranges?.longMax ?? '',
          ranges?.shortMax ?? '',
        ]) as Promise<[number, string[], string[]]>,
    ),
  );
  return { epochs: replies.map(([epoch]) => Number(epoch)), endangered: replies.flatMap(([, longs, shorts]) => [...longs, ...shorts].map(accountOf)) };
}

// ---- PostgreSQL

export interface MarketRow {
  symbol: string;
  status: MarketStatus;
  params: ParamsJson;
  version: string;
  created_at: Date;
  updated_at: Date;
}

export interface CommittedMark {
  readonly version: number;
  readonly previous: string | null;
  /** The market, when this mark listed it (its first mark on an unknown symbol). */
  readonly listed: { readonly json: string; readonly version: number } | null;
}

export type MarkCommit =
  | {
      readonly committed: true;
      readonly version: number;
      readonly previous: string | null;
      /** The market, when this mark listed it (its first mark on an unknown symbol). */
      readonly listed: { readonly json: string; readonly version: number } | null;
    }
  /** Refused by the move guard; nothing was written. */
  | { readonly committed: false; readonly previous: string; readonly maxMove: string };

/**
 * Commits a mark in one statement (the `post_mark` function, sql/004_post_mark.sql): lists
 * the market if it is new, checks the move guard against the mark it
 * replaces, records the mark and its history row. The mark's sweep is
 * pending until markSwept().
 *
 * `sql` should be a connection pool with synchronous_commit off (see
 * createSql's `asyncCommit`): a tick is acknowledged without an fsync. Every
 * liquidation it causes commits durably afterwards, and a durable commit
 * flushes the WAL written before it, this mark's included; a tick that
 * liquidates nothing can lose only itself, in a crash of PostgreSQL's host
 * within wal_writer_delay (200 ms by default).
 */
export async function commitMark(
  sql: Sql,
  symbol: string,
  price: string,
  actor: string | null,
  force: boolean,
  defaultMaxMove: string,
  signal: { onAbort?: () => void },
): Promise<MarkCommit> {
  const query = sql<
    {
      r_refused: boolean;
      r_version: string | null;
      r_previous: string | null;
      r_max_move: string;
      r_listed: boolean;
      r_status: MarketStatus | null;
      r_params: ParamsJson | null;
      r_market_version: string | null;
    }[]
  >`SELECT * FROM post_mark(${symbol}, ${price}::numeric, ${actor}, ${force}, ${defaultMaxMove}::numeric)`;
  // A caller that stops waiting cancels the statement: one still queued for a
  // connection never goes out (so it cannot commit long after the answer), and
  // one running is asked to stop.
  signal.onAbort = () => void query.cancel();
  const [r] = await query;
  const previous = r!.r_previous === null ? null : new D(r!.r_previous).toString();
  if (r!.r_refused) return { committed: false, previous: previous!, maxMove: new D(r!.r_max_move).toString() };
  return {
    committed: true,
    version: Number(r!.r_version),
    previous,
    listed: r!.r_listed ? { json: marketJson(r!.r_status!, r!.r_params!), version: Number(r!.r_market_version) } : null,
  };
}

export const marketJson = (status: MarketStatus, params: ParamsJson): string => JSON.stringify({ status, params } satisfies MarketJson);

/** The mark's sweep finished (and a market it listed reached Redis): one statement. */
export async function markSwept(sql: Sql, symbol: string, version: number, listedVersion: number | null): Promise<void> {
  if (listedVersion === null) {
    await sql`UPDATE mark_prices SET swept_version = ${version} WHERE symbol = ${symbol} AND swept_version < ${version}`;
    return;
  }
  await sql`
    WITH swept AS (UPDATE mark_prices SET swept_version = ${version} WHERE symbol = ${symbol} AND swept_version < ${version})
    UPDATE markets SET applied_version = ${listedVersion} WHERE symbol = ${symbol} AND applied_version < ${listedVersion}`;
}

export async function marketApplied(sql: Sql, symbol: string, version: number): Promise<void> {
  await sql`UPDATE markets SET applied_version = ${version} WHERE symbol = ${symbol} AND applied_version < ${version}`;
}

/**
 * Marks whose sweep has not finished: committed, but Redis may not hold them
 * or their endangered accounts may not all be liquidated yet. `olderThanMs`
 * leaves alone the ones another process is probably still sweeping;
 * `symbols` are taken whatever their age.
 */
export async function pendingMarks(
  sql: Sql,
  olderThanMs: number,
  symbols: readonly string[] = [],
): Promise<{ symbol: string; price: string; version: number; actor: string | null; sweptPrice: string | null }[]> {
  // sweptPrice: the mark of the last finished sweep (null: none yet), from which the sweep's margin calls are judged.
  const rows = await sql<{ symbol: string; price: string; version: string; actor: string | null; swept_price: string | null }[]>`
    SELECT p.symbol, p.price, p.version, p.actor,
           (SELECT e.price FROM market_events e
            WHERE e.symbol = p.symbol AND e.kind = 'mark' AND e.version = p.swept_version
            ORDER BY e.event_id DESC LIMIT 1)::text AS swept_price
    FROM mark_prices p
    WHERE p.swept_version < p.version
      AND (p.updated_at < now() - make_interval(secs => ${olderThanMs / 1000}) OR p.symbol = ANY(${symbols}::text[]))`;
  return rows.map((r) => ({
    symbol: r.symbol,
    price: new D(r.price).toString(),
    version: Number(r.version),
    actor: r.actor,
    sweptPrice: r.swept_price === null ? null : new D(r.swept_price).toString(),
  }));
}

/** Markets whose latest definition Redis is not known to hold. */
export async function pendingMarkets(sql: Sql): Promise<MarketDefinition[]> {
  return (await sql<MarketRow[]>`SELECT * FROM markets WHERE applied_version < version`).map(definitionOf);
}

/** What Redis holds of a market: its JSON and the version it is at. */
export interface MarketDefinition {
  readonly symbol: string;
  readonly json: string;
  readonly version: number;
}

export const definitionOf = (r: MarketRow): MarketDefinition => ({ symbol: r.symbol, json: marketJson(r.status, r.params), version: Number(r.version) });

export async function marketRows(sql: Sql, symbol?: string): Promise<MarketRow[]> {
  return symbol === undefined
    ? sql<MarketRow[]>`SELECT * FROM markets ORDER BY symbol`
    : sql<MarketRow[]>`SELECT * FROM markets WHERE symbol = ${symbol}`;
}

/**
 * Creates or updates a market: `status` and `params` are merged into what it
 * has (params set here replace the stored ones of the same name). Records a
 * 'listed' or 'params' history row. `check` sees the row as it would be and
 * may throw to refuse the change. Returns the row after, and whether it is new.
 */
export async function upsertMarket(
  sql: Sql,
  symbol: string,
  status: MarketStatus | undefined,
  params: ParamsJson,
  actor: string | null,
  check: (row: MarketRow) => void,
): Promise<{ row: MarketRow; created: boolean }> {
  return (await sql.begin(async (tx) => {
    const [existing] = await tx<MarketRow[]>`SELECT * FROM markets WHERE symbol = ${symbol} FOR UPDATE`;
    const changes = { ...(status === undefined ? {} : { status }), ...params };
    let row: MarketRow;
    if (existing) {
      [row] = (await tx<MarketRow[]>`
        UPDATE markets SET status = ${status ?? existing.status}, params = params || ${tx.json(params as Record<string, never>)}::jsonb,
                           version = version + 1, updated_at = now()
        WHERE symbol = ${symbol} RETURNING *`) as unknown as [MarketRow];
    } else {
      [row] = (await tx<MarketRow[]>`
        INSERT INTO markets (symbol, status, params) VALUES (${symbol}, ${status ?? 'active'}, ${tx.json(params as Record<string, never>)})
        RETURNING *`) as unknown as [MarketRow];
    }
    check(row); // throws to roll the change back
    await tx`INSERT INTO market_events (symbol, kind, changes, actor)
             VALUES (${symbol}, ${existing ? 'params' : 'listed'}, ${tx.json(changes as Record<string, never>)}, ${actor})`;
    return { row, created: !existing };
  })) as { row: MarketRow; created: boolean };
}

export interface MarketEventRow {
  event_id: string;
  symbol: string;
  kind: 'listed' | 'mark' | 'params' | 'funding';
  price: string | null;
  previous_price: string | null;
  version: string | null;
  forced: boolean | null;
  changes: Record<string, unknown> | null;
  actor: string | null;
  created_at: Date;
}

/** A page of a market's history, newest first; `before` is the cursor (an event id). */
export async function marketEventPage(sql: Sql, symbol: string, limit: number, before: number | null): Promise<{ events: MarketEventRow[]; nextCursor: number | null }> {
  const rows = await sql<MarketEventRow[]>`
    SELECT * FROM market_events WHERE symbol = ${symbol} ${before === null ? sql`` : sql`AND event_id < ${before}`}
    ORDER BY event_id DESC LIMIT ${limit + 1}`;
  const events = rows.slice(0, limit);
  return { events, nextCursor: rows.length > limit ? Number(events[events.length - 1]!.event_id) : null };
}

/** Every market and mark, for a rebuild and for reconcile. */
export async function allMarkets(sql: Sql): Promise<MarketDefinition[]> {
  return (await sql<MarketRow[]>`SELECT * FROM markets`).map(definitionOf);
}

/**
 * Trading fees summed per symbol from the ledger's trade rows, in two parts:
 * `settled`, rows of transactions in [from, horizon), every one of them over
 * (the horizon is the xmin of a snapshot taken first, as the event stream
 * reads), so their sum never changes and can be kept; and `recent`, rows at
 * or past the horizon that are committed now, to be summed again next time.
 * Uses the index on (xid) of trade rows (sql/005_events.sql).
 */
export async function feeSums(sql: Sql, from: string): Promise<{ horizon: string; settled: Map<string, string>; recent: Map<string, string> }> {
  const [h] = await sql<{ horizon: string }[]>`SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon`;
  const horizon = h!.horizon;
  const rows = await sql<{ symbol: string; settled: boolean; fees: string }[]>`
    SELECT symbol, settled, sum(fee)::text AS fees
    FROM (SELECT symbol, fee, xid < ${horizon}::xid8 AS settled FROM ledger
          WHERE kind = 'TRADE' AND xid >= ${from}::xid8 AND fee IS NOT NULL AND fee <> 0) AS t
    GROUP BY symbol, settled`;
  const settled = new Map<string, string>();
  const recent = new Map<string, string>();
  for (const r of rows) (r.settled ? settled : recent).set(r.symbol, r.fees);
  return { horizon, settled, recent };
}
