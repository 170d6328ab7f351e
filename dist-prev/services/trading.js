import { str } from '../domain/decimal.js';
import { accountNotFound, idempotencyConflict, insufficientMargin } from '../domain/errors.js';
import { decideTrade, decideWithdrawal } from '../domain/margin.js';
import { accountExists } from '../store/accounts.js';
import { parseStoredClientOrder, tradeFingerprint, tradeResultFromEntry } from './ledger-sync.js';
export class TradingService {
    deps;
    constructor(deps) {
        this.deps = deps;
    }
    async trade(cmd) {
        const { result, recheck } = await this.serialised(cmd.accountId, cmd.clientOrderId, (snapshot, lease) => this.tradeLocked(cmd, snapshot, lease));
        // A trade can leave the account under maintenance (a reduce-only trade on
        // an account under water, or a mark that moved while it was booked): it
        // is liquidated at once, before the trader hears back.
        if (recheck)
            await this.recheck(cmd.accountId, 'trade');
        return result;
    }
    async deposit(accountId, amount) {
        const { result } = await this.serialised(accountId, null, async (snapshot, lease) => {
            const { account } = snapshot;
            const balance = account.balance.plus(amount);
            const row = { accountId, seq: account.seq + 1, kind: 'DEPOSIT', amount: str(amount), balance: str(balance) };
            await this.deps.writer.write(lease, snapshot, [row], { balance, positions: account.positions });
            return { result: { account_id: accountId, balance: str(balance) }, recheck: false };
        });
        return result;
    }
    async withdraw(accountId, amount) {
        const { result, recheck } = await this.serialised(accountId, null, async (snapshot, lease) => {
            const { account, marks } = snapshot;
            if (!accountExists(account))
                throw accountNotFound(accountId);
            const decision = decideWithdrawal(account, amount, marks, this.deps.rates);
            if (!decision.accepted) {
                throw insufficientMargin(`withdrawal of ${str(amount)} exceeds the ${str(decision.available)} that can be withdrawn`, str(decision.required), str(decision.available));
            }
            const row = { accountId, seq: account.seq + 1, kind: 'WITHDRAWAL', amount: str(amount), balance: str(decision.balanceAfter) };
            const { marksMoved, applying } = await this.deps.writer.write(lease, snapshot, [row], { balance: decision.balanceAfter, positions: account.positions });
            if (applying)
                this.recheckIfMoved(accountId, applying, 'withdrawal');
            return { result: { account_id: accountId, balance: str(decision.balanceAfter) }, recheck: marksMoved };
        });
        if (recheck)
            await this.recheck(accountId, 'withdrawal');
        return result;
    }
    async tradeLocked(cmd, snapshot, lease) {
        const { account, marks, clientOrder } = snapshot;
        if (clientOrder !== null && cmd.clientOrderId !== null) {
            const stored = parseStoredClientOrder(clientOrder);
            if (stored.fp !== tradeFingerprint(cmd.symbol, cmd.side, str(cmd.quantity), str(cmd.price)))
                throw idempotencyConflict(cmd.clientOrderId);
            return { result: stored.result, recheck: false };
        }
        const fill = { symbol: cmd.symbol, side: cmd.side, quantity: cmd.quantity, price: cmd.price };
        const decision = decideTrade(account, fill, marks, this.deps.rates);
        if (!accountExists(account)) {
            throw insufficientMargin(`account ${cmd.accountId} has no funds`, str(decision.margin.initialMargin), '0');
        }
        if (!decision.accepted) {
            throw insufficientMargin(`trade needs initial margin ${str(decision.required)} but equity after it would be ${str(decision.available)}`, str(decision.required), str(decision.available));
        }
        const { outcome, margin } = decision;
        const position = outcome.position;
        const row = {
            accountId: cmd.accountId,
            seq: account.seq + 1,
            kind: 'TRADE',
            symbol: cmd.symbol,
            side: cmd.side,
            quantity: str(cmd.quantity),
            price: str(cmd.price),
            realisedPnl: str(outcome.realisedPnl),
            clientOrderId: cmd.clientOrderId,
            liquidationId: null,
            positionQuantity: position ? str(position.quantity) : '0',
            positionEntryPrice: position ? str(position.entryPrice) : null,
            equity: str(margin.equity),
            balance: str(outcome.after.balance),
        };
        const { entries, marksMoved, applying } = await this.deps.writer.write(lease, snapshot, [row], outcome.after, { totals: margin });
        const underMaintenance = outcome.after.positions.size > 0 && margin.equity.lt(margin.maintenanceMargin);
        // Under maintenance at the marks it was decided on: liquidated before the
        // answer (the check queues behind the apply). Otherwise, if the apply
        // finds that a mark moved meanwhile, the check follows it.
        if (applying && !underMaintenance)
            this.recheckIfMoved(cmd.accountId, applying, 'trade');
        return { result: tradeResultFromEntry(entries[0], true), recheck: marksMoved || underMaintenance };
    }
    /**
     * An operation answered at its commit: once its Redis apply says whether a
     * mark moved between the decision and the write, the account is re-checked
     * at the new marks (in the background; it queues on the account like any
     * operation, and shutdown waits for it).
     */
    recheckIfMoved(accountId, applying, reason) {
        void applying.then((moved) => (moved ? this.recheck(accountId, reason) : undefined));
    }
    /**
     * The operation is booked; its follow-up liquidation check must not turn a
     * committed 200 into an error. If the check cannot run now (a store is
     * down), the next tick or operation on the account runs it.
     */
    async recheck(accountId, reason) {
        try {
            await this.deps.liquidation.liquidate(accountId, { reason });
        }
        catch (error) {
            this.deps.log.warn({ err: error, accountId }, 'post-trade liquidation check failed; it will run on the next tick or operation');
        }
    }
    serialised(accountId, clientOrderId, op) {
        return this.deps.writer.serialised(accountId, clientOrderId, op, 'optimistic');
    }
}
//# sourceMappingURL=trading.js.map