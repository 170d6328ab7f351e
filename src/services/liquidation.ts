/**
 * Liquidation: an account whose equity falls below maintenance is
 * closed out at once, every position at its mark, as trades carrying the
 * liquidation id; a negative balance is reset to zero and the deficit recorded
 * as the shortfall the insurance fund absorbs. One record per event.
 *
 * It runs under the same account gate as trades, so a trade racing a
 * liquidation lands wholly before it (and is closed by it) or wholly after
 * it (on the flat account).
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { type Dec, str } from '../domain/decimal.js';
import { isLiquidatable, liquidationThresholds, planLiquidation } from '../domain/liquidation.js';
import type { MarginRates } from '../domain/margin.js';
import { reindexAt } from '../store/account-state.js';
import type { LedgerRow, LiquidationIds, LiquidationRecord } from '../store/ledger.js';
import type { KeySpace } from '../store/redis.js';
import { accountOf, queueIndexUpdate, sidesOf, type RiskKeys } from '../store/risk-index.js';
import type { Snapshot } from './account-gate.js';
import type { AccountRunner, Decision } from './account-runner.js';
import { postgresCall, redisCall } from './dependencies.js';

/** What set a liquidation off, and the key behind it (recorded as the liquidation's actor). */
export type LiquidationReason = (
  | { reason: 'mark_price'; symbol: string; price: Dec }
  | { reason: 'trade' }
  | { reason: 'withdrawal' }
  /** A funding payment on `symbol`, charged at the mark `price`. */
  | { reason: 'funding'; symbol: string; price: Dec }
) & {
  readonly actor: string | null;
};

export interface LiquidationDeps {
  readonly redis: Redis;
  readonly keys: KeySpace;
  readonly risk: RiskKeys;
  readonly runner: AccountRunner;
  readonly ids: LiquidationIds;
  readonly rates: MarginRates;
  readonly timeoutMs: number;
  readonly log: Logger;
  /** Told of every committed liquidation (for the metrics). */
  readonly onLiquidated?: (record: LiquidationRecord) => void;
}

/**
 * Decides a liquidation on the snapshot: null (nothing booked) when the
 * account is not under maintenance at its marks; otherwise every position
 * closed at its mark as trades carrying `liquidationId`, an INSURANCE row for
 * a shortfall, and the liquidation's record.
 */
export function liquidationDecision(
  { account, marks }: Snapshot,
  why: LiquidationReason,
  liquidationId: number,
  rates: MarginRates,
): Decision<LiquidationRecord | null> {
  const plan = planLiquidation(account, marks, rates);
  if (!plan) return { kind: 'answer', result: null };
  const { accountId } = account;
  const rows: LedgerRow[] = plan.fills.map((f, i) => ({
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
    actor: why.actor,
  }));
  if (plan.shortfall.gt(0)) {
    rows.push({ accountId, seq: account.seq + 1 + rows.length, kind: 'INSURANCE', amount: str(plan.shortfall), balance: str(plan.balanceAfter), actor: why.actor });
  }
  const record: LiquidationRecord = {
    liquidationId,
    accountId,
    reason: why.reason,
    triggerSymbol: why.reason === 'mark_price' || why.reason === 'funding' ? why.symbol : null,
    triggerPrice: why.reason === 'mark_price' || why.reason === 'funding' ? str(why.price) : null,
    equity: str(plan.equity),
    maintenanceMargin: str(plan.maintenanceMargin),
    realisedPnl: str(plan.realisedPnl),
    shortfall: str(plan.shortfall),
    positions: plan.fills.map((f) => ({ symbol: f.symbol, quantity: str(f.positionQuantity), entry_price: str(f.entryPrice), mark_price: str(f.price) })),
    firstSeq: account.seq + 1,
    lastSeq: account.seq + rows.length,
    actor: why.actor,
  };
  return { kind: 'book', rows, after: { balance: plan.balanceAfter, positions: new Map() }, liquidation: record, result: () => record };
}

export class LiquidationService {
  constructor(private readonly deps: LiquidationDeps) {}

  /**
   * Liquidates the account if, under its lock and at the current marks, its
   * equity is below maintenance. Returns the liquidation id, or null when the
   * account is (no longer) liquidatable.
   */
  async liquidate(accountId: number, why: LiquidationReason): Promise<number | null> {
    const { runner, ids, rates, timeoutMs } = this.deps;
    // The id is taken before the decision, so the decision stays pure.
    const liquidationId = await postgresCall(() => ids.next(), timeoutMs);
    const { result: record } = await runner.run(accountId, (s) => liquidationDecision(s, why, liquidationId, rates), { mode: 'locked' });
    if (record === null) {
      // Only an id certainly unused goes back (after a failed commit it may be in the ledger).
      ids.giveBack(liquidationId);
      return null;
    }
    this.deps.onLiquidated?.(record);
    this.deps.log.info({ accountId, liquidationId, shortfall: record.shortfall, reason: why.reason }, 'account liquidated');
    return liquidationId;
  }

  /**
   * After a tick on `symbol`: liquidates every account the risk index says
   * the new mark may endanger (each is checked exactly under its lock), then
   * refreshes the thresholds that accounts holding this and other symbols
   * have on those other symbols. Each liquidated account id is pushed to
   * `liquidated` as it commits; if any check fails (a store failed), the
   * others still run and then the first failure is thrown: the sweep is
   * unfinished, and whoever runs it again finds only what is left.
   */
  async afterTick(symbol: string, price: Dec, endangered: number[], actor: string | null, liquidated: number[]): Promise<void> {
    const why: LiquidationReason = { reason: 'mark_price', symbol, price, actor };
    await this.liquidateAll(endangered, why, liquidated);
    // Accounts holding this symbol and others: their thresholds on the other
    // symbols moved. Refreshing them also catches an account that only this
    // tick and a concurrent tick on another symbol, together, put under
    // maintenance (each tick's index read may predate the other's mark).
    const underWater = await this.refreshOtherThresholds(symbol, new Set(liquidated));
    await this.liquidateAll(underWater, why, liquidated);
  }

  private async liquidateAll(accountIds: number[], why: LiquidationReason, liquidated: number[]): Promise<void> {
    const results = await Promise.allSettled(
      accountIds.map(async (accountId) => {
        if ((await this.liquidate(accountId, why)) !== null) liquidated.push(accountId);
      }),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /**
   * A position's threshold depends on the marks of the account's other
   * positions. When `symbol` moves, accounts that hold it and something else
   * get their thresholds recomputed at the current marks, under their lock
   * so a concurrent trade's fresher entries are never overwritten. Returns
   * the ones that are liquidatable at the current marks.
   */
  private async refreshOtherThresholds(symbol: string, skip: ReadonlySet<number>): Promise<number[]> {
    const { redis, keys, risk, runner, rates } = this.deps;
    const members = await redisCall(() => redis.smembers(risk.multiOf(symbol)));
    const underWater: number[] = [];
    const results = await Promise.allSettled(
      members
        .map(accountOf)
        .filter((id) => !skip.has(id))
        .map((accountId) =>
          runner.inspect(accountId, async ({ account, marks }) => {
            if (isLiquidatable(account, marks, rates)) {
              underWater.push(accountId);
              return;
            }
            const thresholds = liquidationThresholds(account, marks, rates);
            await reindexAt(redis, keys, accountId, account.seq, (w) => queueIndexUpdate(w, risk, accountId, sidesOf(account.positions), thresholds));
          }),
        ),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return underWater;
  }
}
