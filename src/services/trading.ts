/**
 * Everything a trader does to an account: trades, deposits, withdrawals.
 *
 * Each operation runs under the account gate: read state and marks (one Redis
 * round trip), decide with the pure margin math, then hand the ledger rows to
 * the AccountWriter (durable commit, then one Redis round trip). A failure
 * before the commit leaves nothing anywhere.
 */
import type { Logger } from 'pino';
import { type Dec, str } from '../domain/decimal.js';
import { accountNotFound, idempotencyConflict, insufficientMargin, marketNotFound } from '../domain/errors.js';
import { tradeRefusal } from '../domain/markets.js';
import { decideTrade, decideWithdrawal, type MarginRates, type Side } from '../domain/margin.js';
import { accountExists } from '../store/accounts.js';
import type { Lease, Snapshot } from './account-gate.js';
import type { AccountWriter } from './account-writer.js';
import { parseStoredClientOrder, tradeFingerprint, tradeResultFromEntry, type TradeResult } from './ledger-sync.js';
import type { LiquidationService } from './liquidation.js';

export interface TradeCommand {
  readonly accountId: number;
  readonly symbol: string;
  readonly side: Side;
  readonly quantity: Dec;
  readonly price: Dec;
  readonly clientOrderId: string | null;
  /** The key booking it (null with AUTH=off). */
  readonly actor: string | null;
}

export interface CashResult {
  readonly account_id: number;
  readonly balance: string;
}

export interface TradingDeps {
  readonly writer: AccountWriter;
  readonly liquidation: LiquidationService;
  readonly rates: MarginRates;
  readonly log: Logger;
}

export class TradingService {
  constructor(private readonly deps: TradingDeps) {}

  async trade(cmd: TradeCommand): Promise<TradeResult> {
    const { result, recheck } = await this.serialised(cmd.accountId, cmd.clientOrderId, (snapshot, lease) =>
      this.bookTrade(cmd, snapshot, lease),
    );
    // A trade can leave the account under maintenance (a reduce-only trade on
    // an account under water, or a mark that moved while it was booked): it
    // is liquidated at once, before the trader hears back.
    if (recheck) await this.recheck(cmd.accountId, 'trade', cmd.actor);
    return result;
  }

  async deposit(accountId: number, amount: Dec, actor: string | null): Promise<CashResult> {
    const { result } = await this.serialised(accountId, null, async (snapshot, lease) => {
      const { account } = snapshot;
      const balance = account.balance.plus(amount);
      const row = { accountId, seq: account.seq + 1, kind: 'DEPOSIT' as const, amount: str(amount), balance: str(balance), actor };
      await this.deps.writer.write(lease, snapshot, [row], { balance, positions: account.positions });
      return { result: { account_id: accountId, balance: str(balance) }, recheck: false };
    });
    return result;
  }

  async withdraw(accountId: number, amount: Dec, actor: string | null): Promise<CashResult> {
    const { result, recheck } = await this.serialised(accountId, null, async (snapshot, lease) => {
      const { account, marks } = snapshot;
      if (!accountExists(account)) throw accountNotFound(accountId);
      const decision = decideWithdrawal(account, amount, marks, this.deps.rates);
      if (!decision.accepted) {
        throw insufficientMargin(
          `withdrawal of ${str(amount)} exceeds the ${str(decision.available)} that can be withdrawn`,
          str(decision.required),
          str(decision.available),
        );
      }
      const row = { accountId, seq: account.seq + 1, kind: 'WITHDRAWAL' as const, amount: str(amount), balance: str(decision.balanceAfter), actor };
      const { marksMoved, applying } = await this.deps.writer.write(lease, snapshot, [row], { balance: decision.balanceAfter, positions: account.positions });
      if (applying) this.recheckIfMoved(accountId, applying, 'withdrawal', actor);
      return { result: { account_id: accountId, balance: str(decision.balanceAfter) }, recheck: marksMoved };
    });
    if (recheck) await this.recheck(accountId, 'withdrawal', actor);
    return result;
  }

  /**
   * Decides and books a trade on the snapshot (whichever way the gate took
   * it). The order of checks is the contract's: the market exists, a known
   * client order id answers as first booked (or 409), then the market's
   * status and price band, then margin.
   */
  private async bookTrade(cmd: TradeCommand, snapshot: Snapshot, lease: Lease): Promise<{ result: TradeResult; recheck: boolean }> {
    const { account, marks, markets, clientOrder } = snapshot;
    const market = markets.get(cmd.symbol);
    if (market === undefined) throw marketNotFound(cmd.symbol);
    if (clientOrder !== null && cmd.clientOrderId !== null) {
      const stored = parseStoredClientOrder(clientOrder);
      if (stored.fp !== tradeFingerprint(cmd.symbol, cmd.side, str(cmd.quantity), str(cmd.price))) throw idempotencyConflict(cmd.clientOrderId);
      return { result: stored.result, recheck: false };
    }
    const refusal = tradeRefusal(market, account.positions.get(cmd.symbol), cmd.side, cmd.quantity, cmd.price, marks.get(cmd.symbol));
    if (refusal !== null) throw refusal;
    const fill = { symbol: cmd.symbol, side: cmd.side, quantity: cmd.quantity, price: cmd.price };
    const decision = decideTrade(account, fill, marks, this.deps.rates);
    if (!accountExists(account)) {
      throw insufficientMargin(`account ${cmd.accountId} has no funds`, str(decision.margin.initialMargin), '0');
    }
    if (!decision.accepted) {
      throw insufficientMargin(
        `trade needs initial margin ${str(decision.required)} but equity after it would be ${str(decision.available)}`,
        str(decision.required),
        str(decision.available),
      );
    }
    const { outcome, margin } = decision;
    const position = outcome.position;
    const row = {
      accountId: cmd.accountId,
      seq: account.seq + 1,
      kind: 'TRADE' as const,
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
      actor: cmd.actor,
    };
    const { entries, marksMoved, applying } = await this.deps.writer.write(lease, snapshot, [row], outcome.after, { totals: margin });
    const underMaintenance = outcome.after.positions.size > 0 && margin.equity.lt(margin.maintenanceMargin);
    // Under maintenance at the marks it was decided on: liquidated before the
    // answer (the check queues behind the apply). Otherwise, if the apply
    // finds that a mark moved meanwhile, the check follows it.
    if (applying && !underMaintenance) this.recheckIfMoved(cmd.accountId, applying, 'trade', cmd.actor);
    return { result: tradeResultFromEntry(entries[0]!, true), recheck: marksMoved || underMaintenance };
  }

  /**
   * An operation answered at its commit: once its Redis apply says whether a
   * mark moved between the decision and the write, the account is re-checked
   * at the new marks (in the background; it queues on the account like any
   * operation, and shutdown waits for it).
   */
  private recheckIfMoved(accountId: number, applying: Promise<boolean>, reason: 'trade' | 'withdrawal', actor: string | null): void {
    void applying.then((moved) => (moved ? this.recheck(accountId, reason, actor) : undefined));
  }

  /**
   * The operation is booked; its follow-up liquidation check must not turn a
   * committed 200 into an error. If the check cannot run now (a store is
   * down), the next tick or operation on the account runs it.
   */
  private async recheck(accountId: number, reason: 'trade' | 'withdrawal', actor: string | null): Promise<void> {
    try {
      await this.deps.liquidation.liquidate(accountId, { reason, actor });
    } catch (error) {
      this.deps.log.warn({ err: error, accountId }, 'post-trade liquidation check failed; it will run on the next tick or operation');
    }
  }

  private serialised<T>(accountId: number, clientOrderId: string | null, op: (s: Snapshot, l: Lease) => Promise<T>): Promise<T> {
    return this.deps.writer.serialised(accountId, clientOrderId, op, 'optimistic');
  }
}
