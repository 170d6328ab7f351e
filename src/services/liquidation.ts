/**
 * Liquidation: an account whose equity falls below maintenance is
 * liquidated at once, as trades at the marks carrying the liquidation id:
 * every position closed (full mode), or slices sized to restore a buffer
 * over maintenance (partial mode; see domain/liquidation.ts). A fee on the
 * notional closed goes to the insurance fund; a negative balance left after
 * closing everything is reset to zero and the deficit is the shortfall the
 * fund pays as far as it can. One record per event.
 *
 * It runs under the same account gate as trades, so a trade racing a
 * liquidation lands wholly before it (and is closed by it) or wholly after
 * it (on what is left).
 */
import type { Logger } from 'pino';
import { D, type Dec, str } from '../domain/decimal.js';
import { isLiquidatable, liquidationThresholds, planLiquidation } from '../domain/liquidation.js';
import { marketRules, type RiskParams } from '../domain/margin.js';
import { reindexAt } from '../store/account-state.js';
import type { LedgerRow, LiquidationIds, LiquidationRecord } from '../store/ledger.js';
import type { Sql } from '../store/postgres.js';
import type { KeySpace, RedisClient } from '../store/redis.js';
import { holdersOf, membersOfAll, queueIndexUpdate, sidesOf, tieredEntries, type RiskKeys } from '../store/risk-index.js';
import { settleInsurance } from '../store/insurance.js';
import type { Snapshot } from './account-gate.js';
import type { AccountRunner, Decision } from './account-runner.js';
import { postgresCall, redisCall } from './dependencies.js';
import type { TickMarginCalls } from './margin-calls.js';

/** What set a liquidation off, and the key behind it (recorded as the liquidation's actor). */
export type LiquidationReason = (
  | { reason: 'mark_price'; symbol: string; price: Dec }
  | { reason: 'trade' }
  | { reason: 'withdrawal' }
  | { reason: 'market'; symbol: string }
  /** A funding payment on `symbol`, charged at the mark `price`. */
  | { reason: 'funding'; symbol: string; price: Dec }
) & {
  readonly actor: string | null;
};

export interface LiquidationDeps {
  readonly redis: RedisClient;
  readonly sql: Sql;
  readonly keys: KeySpace;
  readonly risk: RiskKeys;
  readonly runner: AccountRunner;
  readonly ids: LiquidationIds;
  /** Risk parameters of a symbol no market lists. */
  readonly riskDefaults: RiskParams;
  readonly timeoutMs: number;
  readonly log: Logger;
  /** Told of every committed liquidation (for the metrics). */
  readonly onLiquidated?: (record: LiquidationRecord) => void;
  /** Told of the bad debt a settlement added (decimal text; for the metrics). */
  readonly onBadDebt?: (amount: string) => void;
}

/**
 * Decides a liquidation on the snapshot: null (nothing booked) when the
 * account is not liquidatable at its marks; otherwise the closing trades
 * carrying `liquidationId`, a LIQUIDATION_FEE row for a fee, an INSURANCE
 * row for a shortfall, and the liquidation's record.
 */
export function liquidationDecision(
  { account, marks, markets }: Snapshot,
  why: LiquidationReason,
  liquidationId: number,
  riskDefaults: RiskParams,
): Decision<LiquidationRecord | null> {
  const plan = planLiquidation(account, marks, marketRules(markets, riskDefaults));
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
    positionQuantity: f.remaining ? str(f.remaining.quantity) : '0',
    positionEntryPrice: f.remaining ? str(f.remaining.entryPrice) : null,
    equity: null,
    balance: str(f.balanceAfter),
    actor: why.actor,
  }));
  const afterClosing = plan.fills.length > 0 ? plan.fills[plan.fills.length - 1]!.balanceAfter : account.balance;
  if (plan.fee.gt(0)) {
    rows.push({
      accountId,
      seq: account.seq + 1 + rows.length,
      kind: 'LIQUIDATION_FEE',
      amount: str(plan.fee),
      liquidationId,
      balance: str(afterClosing.minus(plan.fee)),
      actor: why.actor,
    });
  }
  if (plan.shortfall.gt(0)) {
    rows.push({ accountId, seq: account.seq + 1 + rows.length, kind: 'INSURANCE', amount: str(plan.shortfall), liquidationId, balance: str(plan.balanceAfter), actor: why.actor });
  }
  const record: LiquidationRecord = {
    liquidationId,
    accountId,
    reason: why.reason,
    mode: plan.mode,
    triggerSymbol: why.reason === 'mark_price' || why.reason === 'market' || why.reason === 'funding' ? why.symbol : null,
    triggerPrice: why.reason === 'mark_price' || why.reason === 'funding' ? str(why.price) : null,
    equity: str(plan.equity),
    maintenanceMargin: str(plan.maintenanceMargin),
    realisedPnl: str(plan.realisedPnl),
    shortfall: str(plan.shortfall),
    fee: str(plan.fee),
    positions: plan.fills.map((f) => ({ symbol: f.symbol, quantity: str(f.closedQuantity), entry_price: str(f.entryPrice), mark_price: str(f.price) })),
    positionsLeft: [...plan.positionsAfter]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([symbol, p]) => ({ symbol, quantity: str(p.quantity), entry_price: str(p.entryPrice) })),
    firstSeq: account.seq + 1,
    lastSeq: account.seq + rows.length,
    actor: why.actor,
  };
  return { kind: 'book', rows, after: { balance: plan.balanceAfter, positions: plan.positionsAfter }, liquidation: record, result: () => record };
}

export class LiquidationService {
  constructor(private readonly deps: LiquidationDeps) {}

  /**
   * Liquidates the account if, under its lock and at the current marks, it
   * is liquidatable, and settles the liquidation against the insurance fund.
   * Returns the liquidation id, or null when the account is (no longer)
   * liquidatable.
   */
  async liquidate(accountId: number, why: LiquidationReason): Promise<number | null> {
    const record = await this.liquidateOne(accountId, why);
    if (record !== null && needsSettling(record)) await this.settle();
    return record?.liquidationId ?? null;
  }

  /**
   * Pays the fees and shortfalls of committed liquidations into and out of
   * the insurance fund (fees first, then shortfalls in ascending account id).
   * Run after each liquidation or tick; recovery runs it again for any a
   * crash or an outage left unsettled.
   */
  async settle(): Promise<number> {
    const { settled, badDebt } = await postgresCall(() => settleInsurance(this.deps.sql), this.deps.timeoutMs);
    if (new D(badDebt).gt(0)) {
      this.deps.onBadDebt?.(badDebt);
      this.deps.log.warn({ badDebt }, 'shortfalls beyond the insurance fund: bad debt');
    }
    return settled;
  }

  private async liquidateOne(accountId: number, why: LiquidationReason): Promise<LiquidationRecord | null> {
    const { runner, ids, riskDefaults, timeoutMs } = this.deps;
    // The id is taken before the decision, so the decision stays pure.
    const liquidationId = await postgresCall(() => ids.next(), timeoutMs);
    const { result: record } = await runner.run(accountId, (s) => liquidationDecision(s, why, liquidationId, riskDefaults), { mode: 'locked' });
    if (record === null) {
      // Only an id certainly unused goes back (after a failed commit it may be in the ledger).
      ids.giveBack(liquidationId);
      return null;
    }
    this.deps.onLiquidated?.(record);
    this.deps.log.info(
      { accountId, liquidationId, mode: record.mode, fee: record.fee, shortfall: record.shortfall, reason: why.reason },
      'account liquidated',
    );
    return record;
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
  async afterTick(symbol: string, price: Dec, endangered: number[], actor: string | null, liquidated: number[], marginCalls?: TickMarginCalls): Promise<void> {
    const why: LiquidationReason = { reason: 'mark_price', symbol, price, actor };
    let settle = await this.liquidateAll(endangered, why, liquidated);
    // Accounts holding this symbol and others: their thresholds on the other
    // symbols moved. Refreshing them also catches an account that only this
    // tick and a concurrent tick on another symbol, together, put under
    // maintenance (each tick's index read may predate the other's mark).
    // The same look at each finds its margin call, recorded before any of them is liquidated.
    const underWater = await this.refreshThresholds(symbol, 'multi', new Set(liquidated), marginCalls?.check);
    await marginCalls?.flush();
    settle = (await this.liquidateAll(underWater, why, liquidated)) || settle;
    if (settle) await this.settle();
  }

  /**
   * After a change of a market's tiers or liquidation parameters: every
   * holder's thresholds are computed again under the new parameters, and the
   * holders the change puts under maintenance are liquidated. Returns them.
   */
  async afterMarketChange(symbol: string, tiers: number, actor: string | null): Promise<number[]> {
    const { redis, risk } = this.deps;
    // One tier: the report orders the market by its thresholds again, and its tier-one lists go.
    if (tiers < 2) await redisCall(() => Promise.all(risk.shards.map((rk) => redis.del(rk.repLong(symbol), rk.repShort(symbol), rk.size(symbol)))));
    const liquidated: number[] = [];
    const underWater = await this.refreshThresholds(symbol, 'all', new Set());
    if (await this.liquidateAll(underWater, { reason: 'market', symbol, actor }, liquidated)) await this.settle();
    return liquidated.sort((a, b) => a - b);
  }

  /** Liquidates the accounts; returns whether any liquidation needs settling against the fund. */
  private async liquidateAll(accountIds: number[], why: LiquidationReason, liquidated: number[]): Promise<boolean> {
    let settle = false;
    const results = await Promise.allSettled(
      accountIds.map(async (accountId) => {
        const record = await this.liquidateOne(accountId, why);
        if (record === null) return;
        liquidated.push(accountId);
        if (needsSettling(record)) settle = true;
      }),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      // What did commit is settled now if it can be (recovery settles it otherwise).
      if (settle) await this.settle().catch(() => undefined);
      throw failed.reason;
    }
    return settle;
  }

  /**
   * A position's threshold depends on the marks of the account's other
   * positions, and on its market's tiers. When `symbol` moves, accounts that
   * hold it and something else (`multi`) get their thresholds recomputed at
   * the current marks; when its market changes, every holder (`all`). Under
   * each account's lock, so a concurrent trade's fresher entries are never
   * overwritten. Returns the ones that are liquidatable now.
   */
  private async refreshThresholds(symbol: string, which: 'multi' | 'all', skip: ReadonlySet<number>, look?: (s: Snapshot) => void): Promise<number[]> {
    const { redis, keys, risk, runner, riskDefaults } = this.deps;
    const members = await redisCall(() => (which === 'multi' ? membersOfAll(redis, risk, (rk) => rk.multiOf(symbol), 'set') : holdersOf(redis, risk, symbol)));
    const underWater: number[] = [];
    const results = await Promise.allSettled(
      members
        .filter((id) => !skip.has(id))
        .map((accountId) =>
          runner.inspect(accountId, async (snapshot) => {
            look?.(snapshot);
            const { account, marks, markets } = snapshot;
            const rules = marketRules(markets, riskDefaults);
            if (isLiquidatable(account, marks, rules)) {
              underWater.push(accountId);
              return;
            }
            const thresholds = liquidationThresholds(account, marks, rules);
            const tiered = tieredEntries(account, marks, rules);
            await reindexAt(redis, keys, accountId, account.seq, (w) => queueIndexUpdate(w, risk, accountId, sidesOf(account.positions), thresholds, tiered));
          }),
        ),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return underWater;
  }
}

/** A liquidation with a fee or a shortfall moves the insurance fund. */
function needsSettling(record: LiquidationRecord): boolean {
  return record.fee !== '0' || record.shortfall !== '0';
}
