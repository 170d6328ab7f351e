/**
 * Everything a trader does to an account: trades, deposits, withdrawals.
 *
 * Each operation is a decision (below: a pure function of the account's
 * snapshot that returns the ledger rows to book, or a refusal) handed to the
 * AccountRunner, which reads the state, commits the rows and applies them to
 * Redis. A failure before the commit leaves nothing anywhere.
 */
import type { Logger } from 'pino';
import { D, type Dec, str, ZERO } from '../domain/decimal.js';
import { liquidationPrices } from '../domain/liquidation.js';
import { accountNotFound, idempotencyConflict, insufficientMargin, marketNotFound, type EngineError } from '../domain/errors.js';
import { feeRate, tradeFee, type Liquidity } from '../domain/fees.js';
import { tradeRefusal } from '../domain/markets.js';
import { decideTrade, decideWithdrawal, marketRules, valueAccount, type AccountMargin, type RiskParams, type Side } from '../domain/margin.js';
import { accountExists } from '../store/account-state.js';
import type { Snapshot } from './account-gate.js';
import type { AccountRunner, Decision, Outcome } from './account-runner.js';
import { parseStoredClientOrder, tradeFingerprint, tradeResultFromEntry, type TradeResult } from './ledger-sync.js';
import type { LiquidationService } from './liquidation.js';
import { operationMarginCall } from './margin-calls.js';

export interface TradeCommand {
  readonly accountId: number;
  readonly symbol: string;
  readonly side: Side;
  readonly quantity: Dec;
  readonly price: Dec;
  readonly clientOrderId: string | null;
  /** Maker or taker: which fee rate of the market the fill pays. */
  readonly liquidity: Liquidity;
  /** The key booking it (null with AUTH=off). */
  readonly actor: string | null;
}

export interface CashResult {
  readonly account_id: number;
  readonly balance: string;
}

/** A trade's answer, and whether the account is left under maintenance at the marks it was decided on. */
export interface BookedTrade {
  readonly answer: TradeResult;
  readonly underMaintenance: boolean;
}

/**
 * Decides a trade on the snapshot. The order of checks is the contract's:
 * the market exists, a known client order id answers as first booked (or
 * 409), then the market's status and price band, then margin.
 */
export function tradeDecision(cmd: TradeCommand, { account, marks, markets, clientOrder }: Snapshot, riskDefaults: RiskParams): Decision<BookedTrade> {
  const market = markets.get(cmd.symbol);
  if (market === undefined) return { kind: 'refuse', error: marketNotFound(cmd.symbol) };
  if (clientOrder !== null && cmd.clientOrderId !== null) {
    const stored = parseStoredClientOrder(clientOrder);
    if (stored.fp !== tradeFingerprint(cmd.symbol, cmd.side, str(cmd.quantity), str(cmd.price), cmd.liquidity)) {
      return { kind: 'refuse', error: idempotencyConflict(cmd.clientOrderId) };
    }
    return { kind: 'answer', result: { answer: stored.result, underMaintenance: false } };
  }
  const refusal = tradeRefusal(market, account.positions.get(cmd.symbol), cmd.side, cmd.quantity, cmd.price, marks.get(cmd.symbol));
  if (refusal !== null) return { kind: 'refuse', error: refusal };
  // The fee comes off the balance as the trade is booked, and the margin
  // check is made on the balance after it: decided on the account less its fee.
  const fee = tradeFee(feeRate(market, cmd.liquidity), cmd.quantity, cmd.price);
  const lessFee = fee.isZero() ? account : { balance: account.balance.minus(fee), positions: account.positions };
  const rules = marketRules(markets, riskDefaults);
  const decision = decideTrade(lessFee, { symbol: cmd.symbol, side: cmd.side, quantity: cmd.quantity, price: cmd.price }, marks, rules);
  if (!accountExists(account)) {
    return { kind: 'refuse', error: insufficientMargin(`account ${cmd.accountId} has no funds`, str(decision.margin.initialMargin), '0') };
  }
  if (!decision.accepted) {
    const message = `trade needs initial margin ${str(decision.required)} but equity after it would be ${str(decision.available)}`;
    return { kind: 'refuse', error: insufficientMargin(message, str(decision.required), str(decision.available)) };
  }
  const { outcome, margin } = decision;
  const position = outcome.position;
  // Under maintenance at the marks it was decided on (a reducing trade on an account under water), or flat with a
  // negative balance (a reducing trade at a bad price): liquidated before the answer.
  const underMaintenance = outcome.after.positions.size > 0 ? margin.equity.lt(margin.maintenanceMargin) : outcome.after.balance.isNeg();
  // Only a reduce-only trade can leave the account below initial margin: any other is healthy after (one comparison).
  const marginCall = operationMarginCall(cmd.accountId, account, outcome.after, marks, rules, { cause: 'trade', symbol: cmd.symbol, seq: account.seq + 1 }, margin);
  return {
    kind: 'book',
    rows: [
      {
        accountId: cmd.accountId,
        seq: account.seq + 1,
        kind: 'TRADE',
        symbol: cmd.symbol,
        side: cmd.side,
        quantity: str(cmd.quantity),
        price: str(cmd.price),
        realisedPnl: str(outcome.realisedPnl),
        fee: str(fee),
        liquidity: cmd.liquidity,
        clientOrderId: cmd.clientOrderId,
        liquidationId: null,
        positionQuantity: position ? str(position.quantity) : '0',
        positionEntryPrice: position ? str(position.entryPrice) : null,
        equity: str(margin.equity),
        balance: str(outcome.after.balance),
        actor: cmd.actor,
      },
    ],
    after: outcome.after,
    totals: margin,
    marginCall,
    result: (entries) => ({ answer: tradeResultFromEntry(entries[0]!, true), underMaintenance }),
  };
}

export function depositDecision(accountId: number, amount: Dec, actor: string | null, { account }: Snapshot): Decision<CashResult> {
  const balance = account.balance.plus(amount);
  return {
    kind: 'book',
    rows: [{ accountId, seq: account.seq + 1, kind: 'DEPOSIT', amount: str(amount), balance: str(balance), actor }],
    after: { balance, positions: account.positions },
    result: () => ({ account_id: accountId, balance: str(balance) }),
  };
}

export function withdrawalDecision(accountId: number, amount: Dec, actor: string | null, { account, marks, markets }: Snapshot, riskDefaults: RiskParams): Decision<CashResult> {
  if (!accountExists(account)) return { kind: 'refuse', error: accountNotFound(accountId) };
  const decision = decideWithdrawal(account, amount, marks, marketRules(markets, riskDefaults));
  if (!decision.accepted) {
    const message = `withdrawal of ${str(amount)} exceeds the ${str(decision.available)} that can be withdrawn`;
    return { kind: 'refuse', error: insufficientMargin(message, str(decision.required), str(decision.available)) };
  }
  const balance = decision.balanceAfter;
  return {
    kind: 'book',
    rows: [{ accountId, seq: account.seq + 1, kind: 'WITHDRAWAL', amount: str(amount), balance: str(balance), actor }],
    after: { balance, positions: account.positions },
    result: () => ({ account_id: accountId, balance: str(balance) }),
  };
}

/** What POST /trade would decide now, and the account it would leave (booking nothing). */
export interface TradePreview {
  readonly accepted: boolean;
  readonly error: EngineError | null;
  readonly fee: Dec;
  readonly after: AccountMargin;
  readonly liquidationPrices: ReadonlyMap<string, Dec | null>;
}

export interface TradingDeps {
  readonly runner: AccountRunner;
  readonly liquidation: LiquidationService;
  readonly riskDefaults: RiskParams;
  readonly log: Logger;
}

export class TradingService {
  constructor(private readonly deps: TradingDeps) {}

  async trade(cmd: TradeCommand): Promise<TradeResult> {
    const { runner, riskDefaults } = this.deps;
    const outcome = await runner.run(cmd.accountId, (s) => tradeDecision(cmd, s, riskDefaults), { mode: 'optimistic', clientOrderId: cmd.clientOrderId });
    if (outcome.result.underMaintenance) await this.liquidationCheck(cmd.accountId, 'trade', cmd.actor);
    else await this.checkIfMarksMoved(cmd.accountId, outcome, 'trade', cmd.actor);
    return outcome.result.answer;
  }

  /**
   * Books a batch of trades, each exactly as trade() would, and settles with
   * one outcome per command, in order. Commands on one account run in their
   * order, each starting once the one before it is answered (its liquidation
   * check included, as a client waiting for each answer would see it);
   * commands on different accounts run concurrently, and their rows share
   * the group commits.
   */
  tradeAll(cmds: readonly TradeCommand[]): Promise<PromiseSettledResult<TradeResult>[]> {
    const previous = new Map<number, Promise<TradeResult>>();
    return Promise.allSettled(
      cmds.map((cmd) => {
        const before = previous.get(cmd.accountId);
        const run = () => this.trade(cmd);
        const answered = before === undefined ? run() : before.then(run, run);
        previous.set(cmd.accountId, answered);
        return answered;
      }),
    );
  }

  /**
   * Decides the trade exactly as POST /trade would, on the account's state
   * under its lock (so no write lands between the read and the decision),
   * and books nothing. A repeated client order id is accepted (POST /trade
   * would answer its first result) with the account unchanged.
   */
  async preview(cmd: TradeCommand): Promise<TradePreview> {
    const { runner, riskDefaults } = this.deps;
    return runner.inspect(cmd.accountId, async (s) => {
      const decision = tradeDecision(cmd, s, riskDefaults);
      const rules = marketRules(s.markets, riskDefaults);
      const after = decision.kind === 'book' ? decision.after : s.account;
      return {
        accepted: decision.kind !== 'refuse',
        error: decision.kind === 'refuse' ? decision.error : null,
        fee: decision.kind === 'book' ? new D(decision.rows[0]!.fee ?? '0') : ZERO,
        after: valueAccount(after, s.marks, rules),
        liquidationPrices: liquidationPrices(after, s.marks, rules),
      };
    });
  }

  async deposit(accountId: number, amount: Dec, actor: string | null): Promise<CashResult> {
    // A deposit only adds equity: no liquidation check follows it.
    const outcome = await this.deps.runner.run(accountId, (s) => depositDecision(accountId, amount, actor, s), { mode: 'optimistic' });
    return outcome.result;
  }

  async withdraw(accountId: number, amount: Dec, actor: string | null): Promise<CashResult> {
    const { runner, riskDefaults } = this.deps;
    const outcome = await runner.run(accountId, (s) => withdrawalDecision(accountId, amount, actor, s, riskDefaults), { mode: 'optimistic' });
    await this.checkIfMarksMoved(accountId, outcome, 'withdrawal', actor);
    return outcome.result;
  }

  /**
   * A mark that moved between the decision and the write may have put the
   * account under maintenance: once the apply says so, it is checked at the
   * new marks. Before the answer, unless the answer was given at the commit
   * (then in the background; it queues on the account like any operation,
   * and shutdown waits for it).
   */
  private async checkIfMarksMoved(accountId: number, outcome: Outcome<unknown>, reason: 'trade' | 'withdrawal', actor: string | null): Promise<void> {
    const checked = outcome.landed.then((moved) => (moved ? this.liquidationCheck(accountId, reason, actor) : undefined));
    if (!outcome.answeredAtCommit) await checked;
  }

  /**
   * The operation is booked; its follow-up liquidation check must not turn a
   * committed 200 into an error. If the check cannot run now (a store is
   * down), the next tick or operation on the account runs it.
   */
  private async liquidationCheck(accountId: number, reason: 'trade' | 'withdrawal', actor: string | null): Promise<void> {
    try {
      await this.deps.liquidation.liquidate(accountId, { reason, actor });
    } catch (error) {
      this.deps.log.warn({ err: error, accountId }, 'post-trade liquidation check failed; it will run on the next tick or operation');
    }
  }
}
