/**
 * The insurance fund, in PostgreSQL only: it moves on liquidations (fees
 * in, shortfalls out) and treasury deposits, never on the trade path, so it
 * needs no hot copy. The functions it calls are in sql/006_risk.sql.
 */
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

/** Settles every unsettled liquidation against the fund; returns how many. */
export async function settleInsurance(sql: Sql): Promise<number> {
  const [row] = await sql<{ settled: number }[]>`SELECT settle_insurance() AS settled`;
  return row?.settled ?? 0;
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
