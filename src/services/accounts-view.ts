/**
 * Read-only views of an account: its margin (from Redis), its trade history and
 * its whole ledger (from PostgreSQL). Reads take no lock and write nothing. They return the
 * engine's values; src/http/views.ts prints them in the wire shape.
 */
import type { Redis } from 'ioredis';
import { accountNotFound } from '../domain/errors.js';
import { marketRules, valueAccount, type AccountMargin, type RiskParams } from '../domain/margin.js';
import { liquidationPrices } from '../domain/liquidation.js';
import type { Dec } from '../domain/decimal.js';
import { accountExists, readAccount } from '../store/account-state.js';
import type { MarkBook } from '../store/mark-book.js';
import { liquidationPage, statementPage, tradePage, type LedgerEntry, type LedgerKind, type LiquidationEntry, type StatementEntry } from '../store/ledger.js';
import type { Sql } from '../store/postgres.js';
import type { KeySpace } from '../store/redis.js';
import { postgresCall, redisCall } from './dependencies.js';

export interface AccountsViewDeps {
  readonly redis: Redis;
  readonly sql: Sql;
  readonly keys: KeySpace;
  readonly marks: MarkBook;
  readonly riskDefaults: RiskParams;
  /** Resolves once Redis holds what this process acknowledged; a 503 if Redis does not get there in time (see AccountGate.applied). */
  readonly applied: (accountId?: number) => Promise<void>;
  readonly timeoutMs: number;
}

export class AccountsView {
  constructor(private readonly deps: AccountsViewDeps) {}

  async positions(accountId: number): Promise<AccountMargin & { liquidationPrices: ReadonlyMap<string, Dec | null> }> {
    const { redis, keys, riskDefaults } = this.deps;
    // A client sees its own acknowledged writes, even one answered before its Redis apply landed.
    await this.deps.applied(accountId);
    const [account, book] = await redisCall(() => Promise.all([readAccount(redis, keys, accountId), this.deps.marks.snapshot()]));
    if (!accountExists(account)) throw accountNotFound(accountId);
    const rules = marketRules(book.markets, riskDefaults);
    return { ...valueAccount(account, book.marks, rules), liquidationPrices: liquidationPrices(account, book.marks, rules) };
  }

  /** Newest first, optionally for one account. The cursor is the last liquidation id of the previous page. */
  async liquidations(accountId: number | null, limit: number, cursor: number | null): Promise<{ liquidations: LiquidationEntry[]; nextCursor: number | null }> {
    return postgresCall(() => liquidationPage(this.deps.sql, accountId, limit, cursor), this.deps.timeoutMs);
  }

  /** Newest first. The cursor is the sequence number of the last trade of the previous page. */
  async trades(accountId: number, limit: number, cursor: number | null): Promise<{ entries: LedgerEntry[]; nextCursor: number | null }> {
    const page = await postgresCall(() => tradePage(this.deps.sql, accountId, limit, cursor), this.deps.timeoutMs);
    if (page.entries.length === 0 && cursor === null) await this.mustExist(accountId);
    return page;
  }

  /** Every ledger row, newest first (only `kinds`, when given). The cursor is the sequence number of the last row of the previous page. */
  async statement(
    accountId: number,
    limit: number,
    cursor: number | null,
    kinds: readonly LedgerKind[] | null,
  ): Promise<{ entries: StatementEntry[]; nextCursor: number | null }> {
    const page = await postgresCall(() => statementPage(this.deps.sql, accountId, limit, cursor, kinds), this.deps.timeoutMs);
    if (page.entries.length === 0 && cursor === null) await this.mustExist(accountId);
    return page;
  }

  /** An empty first page is a 404 unless the account exists (it may have no rows of the kinds asked for). */
  private async mustExist(accountId: number): Promise<void> {
    const { redis, keys } = this.deps;
    const account = await redisCall(() => readAccount(redis, keys, accountId));
    if (!accountExists(account)) throw accountNotFound(accountId);
  }
}
