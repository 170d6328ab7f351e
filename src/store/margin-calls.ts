/**
 * The `margin_calls` table (sql/008_margin_calls.sql): one row per account
 * whose margin status got worse, read by the event stream. A trade's or a
 * funding payment's row commits with its ledger row (the group committer
 * calls `insertMarginCalls` in the same transaction); a tick's are written
 * by `recordTickMarginCalls`, once per (symbol, mark version, account).
 */
import type { Sql } from './postgres.js';

export interface MarginCallRecord {
  readonly accountId: number;
  readonly status: 'margin_call' | 'liquidatable';
  readonly previousStatus: 'healthy' | 'margin_call';
  readonly equity: string;
  readonly initialMargin: string;
  readonly maintenanceMargin: string;
  /** Each symbol held → its mark (null: none yet). */
  readonly marks: Readonly<Record<string, string | null>>;
  readonly cause: 'tick' | 'trade' | 'funding';
  readonly symbol: string;
  /** tick: the mark's version. */
  readonly markVersion: number | null;
  /** funding: the event. */
  readonly fundingId: string | null;
  /** trade, funding: the ledger row's seq. */
  readonly seq: number | null;
}

/** Inserts the records (inside the caller's transaction when it has one). A tick's already recorded for the same mark version are skipped. */
export async function insertMarginCalls(sql: Sql, records: readonly MarginCallRecord[]): Promise<void> {
  if (records.length === 0) return;
  const col = <T>(f: (r: MarginCallRecord) => T) => records.map(f);
  await sql`
    INSERT INTO margin_calls (account_id, status, previous_status, equity, initial_margin, maintenance_margin, marks, cause, symbol,
                              mark_version, funding_id, seq)
    SELECT account, status, previous, equity, im, mm, marks::jsonb, cause, symbol, version, funding, seq
    FROM unnest(
      ${col((r) => r.accountId)}::bigint[], ${col((r) => r.status)}::text[], ${col((r) => r.previousStatus)}::text[],
      ${col((r) => r.equity)}::numeric[], ${col((r) => r.initialMargin)}::numeric[], ${col((r) => r.maintenanceMargin)}::numeric[],
      ${col((r) => JSON.stringify(r.marks))}::text[], ${col((r) => r.cause)}::text[], ${col((r) => r.symbol)}::text[],
      ${col((r) => r.markVersion)}::bigint[], ${col((r) => r.fundingId)}::text[], ${col((r) => r.seq)}::bigint[])
      AS t(account, status, previous, equity, im, mm, marks, cause, symbol, version, funding, seq)
    ORDER BY account
    ON CONFLICT (symbol, mark_version, account_id) WHERE cause = 'tick' DO NOTHING`;
}

/** Some of a tick's margin calls, in one statement (its own commit), before the tick's liquidations. */
export function recordTickMarginCalls(sql: Sql, records: readonly MarginCallRecord[]): Promise<void> {
  return insertMarginCalls(sql, records);
}
