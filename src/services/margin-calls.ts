/**
 * Margin calls (the `margin_call` event): an account whose status got worse
 * (healthy → margin_call, healthy → liquidatable, margin_call →
 * liquidatable). Trades and funding payments find theirs in their own
 * decision and commit it with their ledger row (`marginCallRecord`); a tick
 * finds its accounts here, at no cost to the trade path:
 *
 * - single-symbol holders: a range read of the risk index's threshold lists,
 *   scaled from maintenance to initial margin (domain/margin-calls.ts), in
 *   the sweep's own Redis round trip; for a tiered market the tier-one lists
 *   and the positions beyond the first tier;
 * - those plus the accounts the tick endangers, checked exactly on their
 *   states and written in one statement before the tick liquidates anyone;
 * - accounts holding the symbol and others: checked exactly in the
 *   threshold refresh the tick already runs on each of them under its lock
 *   (`TickMarginCalls.check`), written before those are liquidated.
 */
import type { Logger } from 'pino';
import { type Dec, str } from '../domain/decimal.js';
import { firstTier, marginCallRange, marksBefore, statusChange, tickChange, type StatusChange } from '../domain/margin-calls.js';
import { marginTotals, marketRules, type AccountState, type MarginRules, type MarginTotals, type Marks, type RiskParams } from '../domain/margin.js';
import { readAccounts } from '../store/account-state.js';
import type { MarkBook } from '../store/mark-book.js';
import { recordTickMarginCalls, type MarginCallRecord } from '../store/margin-calls.js';
import { marketField } from '../store/marks-hash.js';
import type { Sql } from '../store/postgres.js';
import type { KeySpace, RedisClient } from '../store/redis.js';
import { marginCallCandidates, type RiskKeys } from '../store/risk-index.js';
import type { Snapshot } from './account-gate.js';
import { postgresCall, redisCall } from './dependencies.js';

/** The ledger row (or tick) a margin call belongs to. */
export type MarginCallCause =
  | { readonly cause: 'tick'; readonly symbol: string; readonly markVersion: number }
  | { readonly cause: 'trade'; readonly symbol: string; readonly seq: number }
  | { readonly cause: 'funding'; readonly symbol: string; readonly fundingId: string; readonly seq: number };

/** The stored record of a transition. */
export function marginCallRecord(accountId: number, change: StatusChange, why: MarginCallCause): MarginCallRecord {
  const marks: Record<string, string | null> = {};
  for (const [symbol, m] of change.marks) marks[symbol] = m === null ? null : str(m);
  return {
    accountId,
    status: change.status,
    previousStatus: change.previous as 'healthy' | 'margin_call',
    equity: str(change.totals.equity),
    initialMargin: str(change.totals.initialMargin),
    maintenanceMargin: str(change.totals.maintenanceMargin),
    marks,
    cause: why.cause,
    symbol: why.symbol,
    markVersion: why.cause === 'tick' ? why.markVersion : null,
    fundingId: why.cause === 'funding' ? why.fundingId : null,
    seq: why.cause === 'tick' ? null : why.seq,
  };
}

/**
 * A trade's or payment's margin call: the account from `before` to `after`
 * at the same marks, or undefined. `afterTotals` are the after-state's
 * totals when the decision has them: an account left healthy (every
 * accepted trade that is not reduce-only) costs one comparison.
 */
export function operationMarginCall(
  accountId: number,
  before: AccountState,
  after: AccountState,
  marks: Marks,
  rules: MarginRules,
  why: MarginCallCause,
  afterTotals?: MarginTotals,
): MarginCallRecord | undefined {
  if (afterTotals !== undefined && afterTotals.equity.gte(afterTotals.initialMargin)) return undefined;
  const change = statusChange(before, marks, after, marks, rules, afterTotals);
  return change === null ? undefined : marginCallRecord(accountId, change, why);
}

/**
 * A funding payment's margin call: only a payment (a fall in balance) can make
 * the status worse. `totals`: `before`'s totals at `marks`, when the caller has them.
 */
export function paymentMarginCall(
  accountId: number,
  before: AccountState,
  delta: Dec,
  marks: Marks,
  rules: MarginRules,
  why: MarginCallCause,
  totals: MarginTotals = marginTotals(before, marks, rules),
): MarginCallRecord | undefined {
  if (!delta.isNeg()) return undefined;
  const equity = totals.equity.plus(delta);
  // Healthy after: nothing to value again.
  if (equity.gte(totals.initialMargin)) return undefined;
  const after = { balance: before.balance.plus(delta), positions: before.positions };
  return operationMarginCall(accountId, before, after, marks, rules, why, { ...totals, equity });
}

/** One tick: its symbol, the mark it moved from (null: the first, or unknown) and to, and the mark's version. */
export interface Tick {
  readonly symbol: string;
  readonly from: Dec | null;
  readonly to: Dec;
  readonly version: number;
}

/** The first-tier parameters a candidate read was made with. */
interface TierGuess {
  readonly initialRate: Dec;
  readonly maintenanceRate: Dec;
  readonly bound: Dec | null;
  readonly tiered: boolean;
}

const sameTier = (a: TierGuess, b: TierGuess) =>
  a.tiered === b.tiered && a.initialRate.eq(b.initialRate) && a.maintenanceRate.eq(b.maintenanceRate) && (a.bound === null ? b.bound === null : b.bound !== null && a.bound.eq(b.bound));

export interface MarginCallDeps {
  readonly redis: RedisClient;
  /**
   * The pool whose commits skip the WAL flush (the marks'): a tick's calls
   * are durable once a later flush covers them, at the latest the first
   * liquidation the tick commits; lost in a crash of PostgreSQL's host before
   * that, they are lost with the sweep's record, and the sweep run again
   * records them again.
   */
  readonly marksSql: Sql;
  readonly keys: KeySpace;
  readonly risk: RiskKeys;
  readonly markBook: MarkBook;
  readonly riskDefaults: RiskParams;
  readonly timeoutMs: number;
  readonly log: Logger;
}

/** The tick's margin calls among the accounts its threshold refresh inspects (multi-symbol holders). */
export interface TickMarginCalls {
  /** Accounts already checked for this tick (the candidates), skipped by the refresh. */
  readonly checked: ReadonlySet<number>;
  /** Checks one account on its snapshot (under its lock). */
  check(snapshot: Snapshot): void;
  /** Writes what `check` found; before the refresh's liquidations. */
  flush(): Promise<void>;
}

/** Accounts per state read of a tick's check. */
const READ_CHUNK = 1024;
/** Margin calls per statement of a tick's record. */
const WRITE_CHUNK = 2000;

export class MarginCallService {
  constructor(private readonly deps: MarginCallDeps) {}

  /**
   * The candidate read for a tick, to go out in the sweep's round trip right
   * after the mark is published. It is made with the market's first tier as
   * this process last read it; `confirm` checks that guess against the
   * market Redis holds (read in the same round trip) and reads again if a
   * market change made it wrong.
   */
  candidates(tick: Tick): { read: Promise<number[]>; market: Promise<string | null>; guess: TierGuess } {
    const { redis, keys, markBook } = this.deps;
    const guess = this.tierOf(markBook.last.markets.get(tick.symbol));
    return { read: this.readCandidates(tick, guess), market: redis.hget(keys.first.marks, marketField(tick.symbol)), guess };
  }

  /** The candidates, read again if the market's tiers were not what the read assumed. */
  async confirm(tick: Tick, json: string | null, guess: TierGuess, read: number[]): Promise<number[]> {
    const actual = this.tierOf(json === null ? undefined : this.deps.markBook.parseMarket(tick.symbol, json));
    if (sameTier(actual, guess)) return read;
    return redisCall(() => this.readCandidates(tick, actual));
  }

  /**
   * Checks the candidates and the accounts the tick endangers exactly, at
   * the tick's marks, and records those whose status got worse (before any
   * of them is liquidated). Returns the accounts checked and the margin
   * calls for the refresh pass.
   */
  async afterTick(tick: Tick, accountIds: readonly number[]): Promise<TickMarginCalls> {
    const { redis, keys, markBook, riskDefaults } = this.deps;
    const ids = [...new Set(accountIds)];
    const checked = new Set(ids);
    if (ids.length > 0) {
      // In chunks: one script call over tens of thousands of accounts would hold Redis up for everyone else meanwhile.
      const chunks: number[][] = [];
      for (let i = 0; i < ids.length; i += READ_CHUNK) chunks.push(ids.slice(i, i + READ_CHUNK));
      const [read, book] = await redisCall(() => Promise.all([Promise.all(chunks.map((c) => readAccounts(redis, keys, c))), markBook.snapshot()]));
      const rules = marketRules(book.markets, riskDefaults);
      const marks = this.withTick(book.marks, tick);
      const before = marksBefore(marks, tick.symbol, tick.from);
      const records: MarginCallRecord[] = [];
      for (const [i, states] of read.entries()) {
        // The event loop is given back between chunks: valuing tens of thousands of accounts at once would hold
        // every other request, and every store call's deadline, for as long.
        if (i > 0) await new Promise((resolve) => setImmediate(resolve));
        for (const state of states) {
          const change = tickChange(state, marks, tick.symbol, tick.from, rules, before);
          if (change !== null) records.push(marginCallRecord(state.accountId, change, { cause: 'tick', symbol: tick.symbol, markVersion: tick.version }));
        }
      }
      await this.record(records);
    }
    const found: MarginCallRecord[] = [];
    return {
      checked,
      check: ({ account, marks, markets }) => {
        if (checked.has(account.accountId)) return;
        const change = tickChange(account, this.withTick(marks, tick), tick.symbol, tick.from, marketRules(markets, riskDefaults));
        if (change !== null) found.push(marginCallRecord(account.accountId, change, { cause: 'tick', symbol: tick.symbol, markVersion: tick.version }));
      },
      flush: () => this.record(found.splice(0)),
    };
  }

  private async record(records: MarginCallRecord[]): Promise<void> {
    if (records.length === 0) return;
    // A statement per few thousand, each within the store deadline, all before the tick's liquidations.
    for (let i = 0; i < records.length; i += WRITE_CHUNK) {
      const chunk = records.slice(i, i + WRITE_CHUNK);
      await postgresCall(() => recordTickMarginCalls(this.deps.marksSql, chunk), this.deps.timeoutMs);
    }
    // Not a business-event line of its own: the stream carries each call.
    this.deps.log.debug({ count: records.length }, 'margin calls recorded');
  }

  /** The marks with the tick's own mark in force (a later tick on the symbol, read meanwhile, is its own sweep's business). */
  private withTick(marks: Marks, tick: Tick): Marks {
    if (marks.get(tick.symbol)?.eq(tick.to) === true) return marks;
    return new Map(marks).set(tick.symbol, tick.to);
  }

  private tierOf(market: RiskParams | undefined): TierGuess {
    const rules: MarginRules = { paramsOf: () => market ?? this.deps.riskDefaults };
    return firstTier(rules, '');
  }

  private readCandidates(tick: Tick, tier: TierGuess): Promise<number[]> {
    const { redis, risk } = this.deps;
    // The first mark: holders were valued at their own entries, so no range tells; every holder is checked (once per symbol).
    const range = tick.from === null ? 'all' : marginCallRange(tick.from, tick.to, tier.initialRate, tier.maintenanceRate);
    if (range === null) return Promise.resolve([]);
    const top = tick.from === null || tick.to.gt(tick.from) ? tick.to : tick.from;
    return marginCallCandidates(redis, risk, tick.symbol, range, tier.tiered, tier.bound === null ? null : tier.bound.div(top));
  }
}
