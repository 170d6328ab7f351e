import { str } from '../domain/decimal.js';
import { isLiquidatable, liquidationThresholds, planLiquidation } from '../domain/liquidation.js';
import { reindexAt } from '../store/accounts.js';
import { accountOf, queueIndexUpdate, sidesOf } from '../store/risk-index.js';
import { postgresCall, redisCall } from './dependencies.js';
export class LiquidationService {
    deps;
    constructor(deps) {
        this.deps = deps;
    }
    /**
     * Liquidates the account if, under its lock and at the current marks, its
     * equity is below maintenance. Returns the liquidation id, or null when the
     * account is (no longer) liquidatable.
     */
    liquidate(accountId, why) {
        return this.deps.writer.serialised(accountId, null, async (snapshot, lease) => {
            const { account, marks } = snapshot;
            const plan = planLiquidation(account, marks, this.deps.rates);
            if (!plan)
                return null;
            const liquidationId = await postgresCall(() => this.deps.ids.next(), this.deps.timeoutMs);
            const rows = plan.fills.map((f, i) => ({
                accountId,
                seq: account.seq + 1 + i,
                kind: 'TRADE',
                symbol: f.symbol,
                side: f.side,
                quantity: str(f.quantity),
                price: str(f.price),
                realisedPnl: str(f.realisedPnl),
                clientOrderId: null,
                liquidationId,
                positionQuantity: '0',
                positionEntryPrice: null,
                equity: null,
                balance: str(f.balanceAfter),
            }));
            if (plan.shortfall.gt(0)) {
                rows.push({ accountId, seq: account.seq + 1 + rows.length, kind: 'INSURANCE', amount: str(plan.shortfall), balance: str(plan.balanceAfter) });
            }
            const record = {
                liquidationId,
                accountId,
                reason: why.reason,
                triggerSymbol: why.reason === 'mark_price' ? why.symbol : null,
                triggerPrice: why.reason === 'mark_price' ? str(why.price) : null,
                equity: str(plan.equity),
                maintenanceMargin: str(plan.maintenanceMargin),
                realisedPnl: str(plan.realisedPnl),
                shortfall: str(plan.shortfall),
                positions: plan.fills.map((f) => ({
                    symbol: f.symbol,
                    quantity: str(f.positionQuantity),
                    entry_price: str(f.entryPrice),
                    mark_price: str(f.price),
                })),
                firstSeq: account.seq + 1,
                lastSeq: account.seq + rows.length,
            };
            const flat = { balance: plan.balanceAfter, positions: new Map() };
            await this.deps.writer.write(lease, snapshot, rows, flat, { liquidation: record });
            this.deps.log.info({ accountId, liquidationId, shortfall: record.shortfall, reason: why.reason }, 'account liquidated');
            return liquidationId;
        });
    }
    /**
     * After a tick on `symbol`: liquidates every account the risk index says
     * the new mark may endanger (each is checked exactly under its lock), then
     * refreshes the thresholds that accounts holding this and other symbols
     * have on those other symbols. Returns the liquidated account ids.
     */
    async afterTick(symbol, price, endangered) {
        const why = { reason: 'mark_price', symbol, price };
        const liquidated = await this.liquidateAll(endangered, why);
        // Accounts holding this symbol and others: their thresholds on the other
        // symbols moved. Refreshing them also catches an account that only this
        // tick and a concurrent tick on another symbol, together, put under
        // maintenance (each tick's index read may predate the other's mark).
        const underWater = await this.refreshOtherThresholds(symbol, new Set(liquidated));
        liquidated.push(...(await this.liquidateAll(underWater, why)));
        return liquidated.sort((a, b) => a - b);
    }
    async liquidateAll(accountIds, why) {
        const results = await Promise.all(accountIds.map(async (accountId) => ((await this.liquidate(accountId, why)) === null ? null : accountId)));
        return results.filter((id) => id !== null);
    }
    /**
     * A position's threshold depends on the marks of the account's other
     * positions. When `symbol` moves, accounts that hold it and something else
     * get their thresholds recomputed at the current marks, under their lock
     * so a concurrent trade's fresher entries are never overwritten. Returns
     * the ones that are liquidatable at the current marks.
     */
    async refreshOtherThresholds(symbol, skip) {
        const { redis, keys, risk, gate, rates } = this.deps;
        const members = await redisCall(() => redis.smembers(risk.multiOf(symbol)));
        const underWater = [];
        await Promise.all(members
            .map(accountOf)
            .filter((id) => !skip.has(id))
            .map((accountId) => gate.run(accountId, null, async ({ account, marks }) => {
            if (isLiquidatable(account, marks, rates)) {
                underWater.push(accountId);
                return;
            }
            const thresholds = liquidationThresholds(account, marks, rates);
            await reindexAt(redis, keys, accountId, account.seq, (w) => queueIndexUpdate(w, risk, accountId, sidesOf(account.positions), thresholds));
        })));
        return underWater;
    }
}
//# sourceMappingURL=liquidation.js.map