/**
 * The insurance fund as the API shows it: its balance and totals, its
 * movements, and treasury deposits. Liquidations settle against it through
 * LiquidationService.settle.
 */
import type { Logger } from 'pino';
import type { Dec } from '../domain/decimal.js';
import { depositToFund, fundHistory, readFund, type FundMovement, type FundRow } from '../store/insurance.js';
import type { Sql } from '../store/postgres.js';
import { postgresCall } from './dependencies.js';

export class InsuranceFundService {
  constructor(private readonly deps: { readonly sql: Sql; readonly timeoutMs: number; readonly log: Logger }) {}

  fund(): Promise<FundRow> {
    return postgresCall(() => readFund(this.deps.sql), this.deps.timeoutMs);
  }

  history(limit: number, before: number | null): Promise<{ movements: FundMovement[]; nextCursor: number | null }> {
    return postgresCall(() => fundHistory(this.deps.sql, limit, before), this.deps.timeoutMs);
  }

  async deposit(amount: Dec, actor: string | null): Promise<FundRow> {
    const fund = await postgresCall(() => depositToFund(this.deps.sql, amount.toString(), actor), this.deps.timeoutMs);
    this.deps.log.info({ amount: amount.toString(), balance: fund.balance, actor }, 'insurance fund deposit');
    return fund;
  }
}
