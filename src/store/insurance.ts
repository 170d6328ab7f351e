/**
 * The insurance fund, in PostgreSQL only: it moves on liquidations (fees
 * in, shortfalls out) and treasury deposits, never on the trade path, so it
 * needs no hot copy. The functions it calls are in sql/006_risk.sql.
 */
import { D } from '../domain/decimal.js';
import type { Sql } from './postgres.js';

export interface FundRow {
  readonly balance: string;
  readonly feesReceived: string;
  readonly deposits: string;
  readonly shortfallsPaid: string;
  readonly badDebt: string;
}

export interface FundMovement {
  readonly movementId: number;
  readonly kind: 'fee' | 'deposit' | 'shortfall';
  readonly amount: string;
  readonly balance: string;
  readonly liquidationId: number | null;
  readonly accountId: number | null;
  readonly shortfall: string | null;
  readonly badDebt: string | null;
  readonly actor: string | null;
  readonly createdAt: Date;
}

interface FundRecord {
  balance: string;
  fees_received: string;
  deposits: string;
  shortfalls_paid: string;
  bad_debt: string;
}

const fundOf = (r: FundRecord): FundRow => ({
  balance: r.balance,
  feesReceived: r.fees_received,
  deposits: r.deposits,
  shortfallsPaid: r.shortfalls_paid,
  badDebt: r.bad_debt,
});

/** Settles every unsettled liquidation against the fund; returns how many, and the bad debt they added (decimal text). */
export async function settleInsurance(sql: Sql): Promise<{ settled: number; badDebt: string }> {
  const [row] = await sql<{ settled: number; bad_debt: string }[]>`SELECT settled, bad_debt::text FROM settle_insurance()`;
  return { settled: row?.settled ?? 0, badDebt: row?.bad_debt ?? '0' };
}

export async function readFund(sql: Sql): Promise<FundRow> {
  const [row] = await sql<FundRecord[]>`SELECT balance, fees_received, deposits, shortfalls_paid, bad_debt FROM insurance_fund WHERE id = 1`;
  return fundOf(row!);
}

/** A treasury deposit; returns the fund after it. */
export async function depositToFund(sql: Sql, amount: string, actor: string | null): Promise<FundRow> {
  const [row] = await sql<FundRecord[]>`SELECT balance, fees_received, deposits, shortfalls_paid, bad_debt FROM insurance_deposit(${amount}::numeric, ${actor})`;
  return fundOf(row!);
}

/** The fund's movements, newest first; `before` is the cursor (a movement id). */
export async function fundHistory(sql: Sql, limit: number, before: number | null): Promise<{ movements: FundMovement[]; nextCursor: number | null }> {
  const rows = await sql<
    {
      movement_id: string;
      kind: FundMovement['kind'];
      amount: string;
      balance: string;
      liquidation_id: string | null;
      account_id: string | null;
      shortfall: string | null;
      bad_debt: string | null;
      actor: string | null;
      created_at: Date;
    }[]
  >`
    SELECT movement_id, kind, amount, balance, liquidation_id, account_id, shortfall, bad_debt, actor, created_at
    FROM insurance_fund_history
    WHERE true ${before === null ? sql`` : sql`AND movement_id < ${before}`}
    ORDER BY movement_id DESC LIMIT ${limit + 1}`;
  const page = rows.slice(0, limit).map((r) => ({
    movementId: Number(r.movement_id),
    kind: r.kind,
    amount: r.amount,
    balance: r.balance,
    liquidationId: r.liquidation_id === null ? null : Number(r.liquidation_id),
    accountId: r.account_id === null ? null : Number(r.account_id),
    shortfall: r.shortfall,
    badDebt: r.bad_debt,
    actor: r.actor,
    createdAt: r.created_at,
  }));
  return { movements: page, nextCursor: rows.length > limit ? page[page.length - 1]!.movementId : null };
}

/**
 * Every inconsistency of the fund (empty: none): liquidations not yet
 * settled against it, its totals against its movements and against the
 * liquidations it settled, and each liquidation's fee against the ledger's
 * LIQUIDATION_FEE row.
 */
export async function fundDifferences(sql: Sql): Promise<string[]> {
  const [r] = await sql<
    {
      unsettled: number;
      balance: string;
      moved: string;
      fees_received: string;
      fee_moves: string;
      fees_settled: string;
      deposits: string;
      deposit_moves: string;
      shortfalls_paid: string;
      shortfall_moves: string;
      paid_settled: string;
      bad_debt: string;
      bad_debt_settled: string;
      fee_rows_differ: number;
    }[]
  >`
    WITH moves AS (
      SELECT coalesce(sum(amount) FILTER (WHERE kind = 'fee'), 0) AS fee,
             coalesce(sum(amount) FILTER (WHERE kind = 'deposit'), 0) AS deposit,
             coalesce(sum(amount) FILTER (WHERE kind = 'shortfall'), 0) AS shortfall
      FROM insurance_fund_history),
    settled AS (
      SELECT count(*) FILTER (WHERE NOT settled)::int AS unsettled,
             coalesce(sum(fee) FILTER (WHERE settled), 0) AS fees,
             coalesce(sum(fund_paid) FILTER (WHERE settled), 0) AS paid,
             coalesce(sum(bad_debt) FILTER (WHERE settled), 0) AS bad_debt
      FROM liquidations),
    fee_rows AS (
      SELECT count(*)::int AS differ FROM liquidations l
      WHERE l.fee <> coalesce((SELECT sum(amount) FROM ledger g WHERE g.liquidation_id = l.liquidation_id AND g.kind = 'LIQUIDATION_FEE'), 0))
    SELECT s.unsettled, f.balance::text, (m.fee + m.deposit - m.shortfall)::text AS moved,
           f.fees_received::text, m.fee::text AS fee_moves, s.fees::text AS fees_settled,
           f.deposits::text, m.deposit::text AS deposit_moves,
           f.shortfalls_paid::text, m.shortfall::text AS shortfall_moves, s.paid::text AS paid_settled,
           f.bad_debt::text, s.bad_debt::text AS bad_debt_settled, r.differ AS fee_rows_differ
    FROM insurance_fund f, moves m, settled s, fee_rows r WHERE f.id = 1`;
  const row = r!;
  const diffs: string[] = [];
  const same = (a: string, b: string) => new D(a).eq(b);
  if (row.unsettled > 0) diffs.push(`insurance fund: ${row.unsettled} liquidation(s) not settled against it`);
  if (!same(row.balance, row.moved)) diffs.push(`insurance fund: balance ${row.balance}, its movements make ${row.moved}`);
  if (!same(row.fees_received, row.fee_moves) || !same(row.fees_received, row.fees_settled)) {
    diffs.push(`insurance fund: fees received ${row.fees_received}, movements ${row.fee_moves}, settled liquidations ${row.fees_settled}`);
  }
  if (!same(row.deposits, row.deposit_moves)) diffs.push(`insurance fund: deposits ${row.deposits}, movements ${row.deposit_moves}`);
  if (!same(row.shortfalls_paid, row.shortfall_moves) || !same(row.shortfalls_paid, row.paid_settled)) {
    diffs.push(`insurance fund: shortfalls paid ${row.shortfalls_paid}, movements ${row.shortfall_moves}, settled liquidations ${row.paid_settled}`);
  }
  if (!same(row.bad_debt, row.bad_debt_settled)) diffs.push(`insurance fund: bad debt ${row.bad_debt}, settled liquidations ${row.bad_debt_settled}`);
  if (row.fee_rows_differ > 0) diffs.push(`insurance fund: ${row.fee_rows_differ} liquidation(s) whose fee differs from their LIQUIDATION_FEE rows`);
  return diffs;
}
