/**
 * Read-only views of an account: its margin (from Redis) and its trade history
 * (from PostgreSQL). Reads take no lock and write nothing.
 */
import type { Redis } from 'ioredis';
import { str } from '../domain/decimal.js';
import { accountNotFound } from '../domain/errors.js';
import { valueAccount, type MarginRates, type MarginStatus } from '../domain/margin.js';
import { accountExists, readAccount } from '../store/account-state.js';
import type { MarkBook } from '../store/mark-book.js';
import { liquidationPage, tradePage, type LiquidationView } from '../store/ledger.js';
import type { Sql } from '../store/postgres.js';
import type { KeySpace } from '../store/redis.js';
import { postgresCall, redisCall } from './dependencies.js';

export interface PositionsView {
  readonly account_id: number;
  readonly balance: string;
  readonly equity: string;
  readonly unrealised_pnl: string;
  readonly notional: string;
  readonly initial_margin: string;
  readonly maintenance_margin: string;
  readonly available_margin: string;
  readonly margin_utilisation_pct: string | null;
  readonly status: MarginStatus;
  readonly positions: {
    readonly symbol: string;
    readonly quantity: string;
    readonly entry_price: string;
    readonly mark_price: string | null;
    readonly notional: string;
    readonly unrealised_pnl: string;
  }[];
}

export interface TradeView {
  readonly trade_id: number;
  readonly account_id: number;
  readonly symbol: string;
  readonly side: 'BUY' | 'SELL';
  readonly quantity: string;
  readonly price: string;
  readonly realised_pnl: string;
  readonly liquidation_id: number | null;
  readonly client_order_id: string | null;
  readonly actor: string | null;
  readonly created_at: string;
}

export interface AccountsViewDeps {
  readonly redis: Redis;
  readonly sql: Sql;
  readonly keys: KeySpace;
  readonly marks: MarkBook;
  readonly rates: MarginRates;
  /** Resolves once Redis holds what this process acknowledged; a 503 if Redis does not get there in time (see AccountGate.applied). */
  readonly applied: (accountId?: number) => Promise<void>;
  readonly timeoutMs: number;
}

export class AccountsView {
  constructor(private readonly deps: AccountsViewDeps) {}

  async positions(accountId: number): Promise<PositionsView> {
    const { redis, keys, rates } = this.deps;
    // A client sees its own acknowledged writes, even one answered before its Redis apply landed.
    await this.deps.applied(accountId);
    const [account, marks] = await redisCall(() => Promise.all([readAccount(redis, keys, accountId), this.deps.marks.current()]));
    if (!accountExists(account)) throw accountNotFound(accountId);
    const m = valueAccount(account, marks, rates);
    return {
      account_id: accountId,
      balance: str(m.balance),
      equity: str(m.equity),
      unrealised_pnl: str(m.unrealisedPnl),
      notional: str(m.notional),
      initial_margin: str(m.initialMargin),
      maintenance_margin: str(m.maintenanceMargin),
      available_margin: str(m.availableMargin),
      margin_utilisation_pct: m.utilisationPct === null ? null : str(m.utilisationPct),
      status: m.status,
      positions: m.positions.map((p) => ({
        symbol: p.symbol,
        quantity: str(p.quantity),
        entry_price: str(p.entryPrice),
        mark_price: p.markPrice === null ? null : str(p.markPrice),
        notional: str(p.notional),
        unrealised_pnl: str(p.unrealisedPnl),
      })),
    };
  }

  /** Newest first, optionally for one account. The cursor is the last liquidation id of the previous page. */
  async liquidations(accountId: number | null, limit: number, cursor: number | null): Promise<{ liquidations: LiquidationView[]; next_cursor: string | null }> {
    const page = await postgresCall(() => liquidationPage(this.deps.sql, accountId, limit, cursor), this.deps.timeoutMs);
    return { liquidations: page.liquidations, next_cursor: page.nextCursor === null ? null : String(page.nextCursor) };
  }

  /** Newest first. The cursor is the sequence number of the last trade of the previous page. */
  async trades(accountId: number, limit: number, cursor: number | null): Promise<{ trades: TradeView[]; next_cursor: string | null }> {
    const { redis, sql, keys, timeoutMs } = this.deps;
    const page = await postgresCall(() => tradePage(sql, accountId, limit, cursor), timeoutMs);
    if (page.entries.length === 0 && cursor === null) {
      const account = await redisCall(() => readAccount(redis, keys, accountId));
      if (!accountExists(account)) throw accountNotFound(accountId);
    }
    return {
      trades: page.entries.map((e) => ({
        trade_id: e.entryId,
        account_id: e.accountId,
        symbol: e.symbol!,
        side: e.side!,
        quantity: e.quantity!,
        price: e.price!,
        realised_pnl: e.realisedPnl!,
        liquidation_id: e.liquidationId,
        client_order_id: e.clientOrderId,
        actor: e.actor,
        created_at: e.createdAt.toISOString(),
      })),
      next_cursor: page.nextCursor === null ? null : String(page.nextCursor),
    };
  }
}
