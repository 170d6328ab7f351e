import { str } from '../domain/decimal.js';
import { accountNotFound } from '../domain/errors.js';
import { valueAccount } from '../domain/margin.js';
import { accountExists, readAccount } from '../store/accounts.js';
import { liquidationPage, tradePage } from '../store/ledger.js';
import { postgresCall, redisCall } from './dependencies.js';
export class AccountsView {
    deps;
    constructor(deps) {
        this.deps = deps;
    }
    async positions(accountId) {
        const { redis, keys, rates } = this.deps;
        // A client sees its own acknowledged writes, even one answered before its Redis apply landed.
        await this.deps.applied(accountId);
        const { account, marks } = await redisCall(() => readAccount(redis, keys, this.deps.marks, accountId));
        if (!accountExists(account))
            throw accountNotFound(accountId);
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
    async liquidations(accountId, limit, cursor) {
        const page = await postgresCall(() => liquidationPage(this.deps.sql, accountId, limit, cursor), this.deps.timeoutMs);
        return { liquidations: page.liquidations, next_cursor: page.nextCursor === null ? null : String(page.nextCursor) };
    }
    /** Newest first. The cursor is the sequence number of the last trade of the previous page. */
    async trades(accountId, limit, cursor) {
        const { redis, sql, keys, timeoutMs } = this.deps;
        const page = await postgresCall(() => tradePage(sql, accountId, limit, cursor), timeoutMs);
        if (page.entries.length === 0 && cursor === null) {
            const { account } = await redisCall(() => readAccount(redis, keys, this.deps.marks, accountId));
            if (!accountExists(account))
                throw accountNotFound(accountId);
        }
        return {
            trades: page.entries.map((e) => ({
                trade_id: e.entryId,
                account_id: e.accountId,
                symbol: e.symbol,
                side: e.side,
                quantity: e.quantity,
                price: e.price,
                realised_pnl: e.realisedPnl,
                liquidation_id: e.liquidationId,
                client_order_id: e.clientOrderId,
                created_at: e.createdAt.toISOString(),
            })),
            next_cursor: page.nextCursor === null ? null : String(page.nextCursor),
        };
    }
}
//# sourceMappingURL=accounts-view.js.map