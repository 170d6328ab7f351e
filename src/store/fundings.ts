/**
 * Funding events in PostgreSQL: the `fundings` row of each event (its rate,
 * the mark it is charged at, whether it is finished, its totals), and the
 * reads of its FUNDING ledger rows (sql/007_fees_funding.sql).
 */
import type { Sql } from './postgres.js';

export interface FundingRow {
  funding_id: string;
  symbol: string;
  rate: string;
  mark_price: string;
  status: 'running' | 'done';
  accounts: string | null;
  paid: string | null;
  received: string | null;
  liquidated: string[] | null;
  actor: string | null;
  created_at: Date;
  finished_at: Date | null;
}

export type FundingOpening =
  /** The id is new: the event is recorded as running, at the symbol's current mark. */
  | { readonly kind: 'created'; readonly row: FundingRow }
  /** The id was used before (by this request's first sending, or another). */
  | { readonly kind: 'existing'; readonly row: FundingRow }
  | { readonly kind: 'not_listed' }
  | { readonly kind: 'no_mark' };

/**
 * Records a funding event as running at the symbol's latest committed mark,
 * unless its id exists (then that row is returned, whatever its symbol).
 */
export async function openFunding(sql: Sql, fundingId: string, symbol: string, rate: string, actor: string | null): Promise<FundingOpening> {
  return (await sql.begin(async (tx) => {
    const existing = async () => (await tx<FundingRow[]>`SELECT * FROM fundings WHERE funding_id = ${fundingId}`)[0];
    const before = await existing();
    if (before) return { kind: 'existing', row: before };
    const [market] = await tx<{ symbol: string }[]>`SELECT symbol FROM markets WHERE symbol = ${symbol}`;
    if (!market) return { kind: 'not_listed' };
    const [created] = await tx<FundingRow[]>`
      INSERT INTO fundings (funding_id, symbol, rate, mark_price, actor)
      SELECT ${fundingId}, ${symbol}, ${rate}::numeric, price, ${actor} FROM mark_prices WHERE symbol = ${symbol}
      ON CONFLICT (funding_id) DO NOTHING
      RETURNING *`;
    if (created) return { kind: 'created', row: created };
    // No mark, or a concurrent request with the same id got there first.
    const raced = await existing();
    return raced ? { kind: 'existing', row: raced } : { kind: 'no_mark' };
  })) as FundingOpening;
}

/** The accounts the event has charged so far (its FUNDING rows). */
export async function chargedAccounts(sql: Sql, fundingId: string): Promise<Set<number>> {
  const rows = await sql<{ account_id: string }[]>`SELECT account_id FROM ledger WHERE kind = 'FUNDING' AND funding_id = ${fundingId}`;
  return new Set(rows.map((r) => Number(r.account_id)));
}

/** A running event's sign of life (recovery takes over one that shows none for a while). */
export async function touchFunding(sql: Sql, fundingId: string): Promise<void> {
  await sql`UPDATE fundings SET updated_at = now() WHERE funding_id = ${fundingId} AND status = 'running'`;
}

/**
 * Finishes an event: its totals summed exactly from its ledger rows, the
 * accounts it liquidated, and its history row (market_events, kind
 * 'funding', which the event stream also carries), in one transaction.
 * Returns the finished row (the first finisher's, if two raced).
 */
export async function finishFunding(sql: Sql, fundingId: string, liquidated: readonly number[]): Promise<FundingRow> {
  return (await sql.begin(async (tx) => {
    const [done] = await tx<FundingRow[]>`
      WITH totals AS (
        SELECT count(*) AS accounts,
               coalesce(sum(-amount) FILTER (WHERE amount < 0), 0) AS paid,
               coalesce(sum(amount) FILTER (WHERE amount > 0), 0) AS received
        FROM ledger WHERE kind = 'FUNDING' AND funding_id = ${fundingId})
      UPDATE fundings f SET status = 'done', accounts = t.accounts, paid = t.paid, received = t.received,
                            liquidated = ${liquidated as number[]}::bigint[], finished_at = now(), updated_at = now()
      FROM totals t
      WHERE f.funding_id = ${fundingId} AND f.status = 'running'
      RETURNING f.*`;
    if (!done) {
      const [row] = await tx<FundingRow[]>`SELECT * FROM fundings WHERE funding_id = ${fundingId}`;
      return row!;
    }
    await tx`
      INSERT INTO market_events (symbol, kind, price, changes, actor)
      VALUES (${done.symbol}, 'funding', ${done.mark_price}::numeric,
              jsonb_build_object('funding_id', ${fundingId}::text, 'rate', trim_scale(${done.rate}::numeric)::text, 'accounts', ${done.accounts}::bigint,
                                 'paid', trim_scale(${done.paid}::numeric)::text, 'received', trim_scale(${done.received}::numeric)::text,
                                 'liquidated', to_jsonb(${liquidated as number[]}::bigint[])),
              ${done.actor})`;
    return done;
  })) as FundingRow;
}

/**
 * Events still running: those not touched for `idleMs` (their process has
 * probably died), and `ids` whatever their age. `idleMs` 0: every one.
 */
export async function runningFundings(sql: Sql, idleMs: number, ids: readonly string[] = []): Promise<FundingRow[]> {
  return sql<FundingRow[]>`
    SELECT * FROM fundings
    WHERE status = 'running' AND (updated_at <= now() - make_interval(secs => ${idleMs / 1000}) OR funding_id = ANY(${ids as string[]}::text[]))
    ORDER BY created_at`;
}
