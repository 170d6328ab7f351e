/**
 * Bringing an account's Redis state level with its PostgreSQL ledger, and the
 * one mapping from a ledger row to the account update it implies.
 */
import type { TradeResponse } from '../http/schemas.js';
import { D } from '../domain/decimal.js';
import { liquidationThresholds } from '../domain/liquidation.js';
import { marketRules, type RiskParams } from '../domain/margin.js';
import { applyAccount, parseAccount, reindexAt, type AccountUpdate } from '../store/account-state.js';
import type { MarkBook } from '../store/mark-book.js';
import { entriesAfter, type LedgerEntry } from '../store/ledger.js';
import type { Sql } from '../store/postgres.js';
import type { KeySpace, RedisClient } from '../store/redis.js';
import { queueIndexRemoval, queueIndexUpdate, tieredEntries, type RiskKeys } from '../store/risk-index.js';
import { postgresCall, redisCall } from './dependencies.js';

/**
 * The trade response, as first booked; what a repeated client order id gets
 * back. Redis keeps it in the wire shape, so its type is the wire schema's
 * (a type only: nothing of the HTTP layer runs here).
 */
export type TradeResult = TradeResponse;

const normalise = (s: string) => new D(s).toString();
const same = (s: string) => s;

/**
 * Identifies a trade's parameters, so a reused client order id can be told
 * apart from a retry. A maker fill's fingerprint ends in `|maker`; a taker's
 * has no suffix, so fingerprints stored before liquidity existed (every
 * trade was a taker's then) still match.
 */
export function tradeFingerprint(symbol: string, side: string, quantity: string, price: string, liquidity: string | null = 'taker'): string {
  const base = `${symbol}|${side}|${normalise(quantity)}|${normalise(price)}`;
  return liquidity === 'maker' ? `${base}|maker` : base;
}

/**
 * The trade response a ledger row stands for. `canonical`: the row's decimal
 * strings were printed by this engine (str()), so they need no normalising;
 * rows read back from PostgreSQL may carry a NUMERIC's trailing zeros.
 */
export function tradeResultFromEntry(e: LedgerEntry, canonical = false): TradeResult {
  const norm = canonical ? same : normalise;
  if (e.kind !== 'TRADE' || !e.symbol || !e.side || !e.quantity || !e.price || !e.realisedPnl || !e.positionQuantity) {
    throw new Error(`ledger row ${e.accountId}/${e.seq} is not a trade`);
  }
  return {
    success: true,
    trade_id: e.entryId,
    account_id: e.accountId,
    symbol: e.symbol,
    side: e.side,
    quantity: norm(e.quantity),
    price: norm(e.price),
    realised_pnl: norm(e.realisedPnl),
    fee: e.fee === null ? '0' : norm(e.fee),
    liquidity: e.liquidity ?? 'taker',
    position: {
      symbol: e.symbol,
      quantity: norm(e.positionQuantity),
      entry_price: e.positionEntryPrice === null ? null : norm(e.positionEntryPrice),
    },
    balance: norm(e.balance),
    equity: norm(e.equity ?? e.balance),
  };
}

/** What Redis keeps for a booked client order id: the parameters' fingerprint and the first result. */
export function storedClientOrder(e: LedgerEntry): string {
  const result = tradeResultFromEntry(e);
  return JSON.stringify({ fp: tradeFingerprint(result.symbol, result.side, result.quantity, result.price, result.liquidity), result });
}

export function parseStoredClientOrder(stored: string): { fp: string; result: TradeResult } {
  return JSON.parse(stored) as { fp: string; result: TradeResult };
}

/** The Redis update a committed ledger row implies, applied on top of `expectedSeq`. */
export function updateFromEntry(e: LedgerEntry, expectedSeq: number): AccountUpdate {
  const norm = normalise;
  const base = { accountId: e.accountId, expectedSeq, seq: e.seq, balance: norm(e.balance) };
  if (e.kind !== 'TRADE') return { ...base, set: [], remove: [] };
  const symbol = e.symbol!;
  const flat = new D(e.positionQuantity!).isZero();
  return {
    ...base,
    set: flat ? [] : [{ symbol, quantity: norm(e.positionQuantity!), entryPrice: norm(e.positionEntryPrice!) }],
    remove: flat ? [symbol] : [],
    ...(e.clientOrderId ? { clientOrder: { id: e.clientOrderId, stored: storedClientOrder(e) } } : {}),
  };
}

/**
 * Replays the ledger rows Redis has not seen (after `fromSeq`) onto the
 * account. Each apply is conditional on the sequence it expects, so a
 * concurrent catch-up or a late writer cannot apply a row twice.
 */
export async function catchUp(redis: RedisClient, sql: Sql, keys: KeySpace, accountId: number, fromSeq: number, timeoutMs: number): Promise<LedgerEntry[]> {
  const entries = await postgresCall(() => entriesAfter(sql, accountId, fromSeq), timeoutMs);
  let expected = fromSeq;
  for (const e of entries) {
    await redisCall(() => applyAccount(redis, keys, { update: updateFromEntry(e, expected), isNew: expected === 0 }));
    expected = e.seq;
  }
  return entries;
}

/**
 * Rewrites an account's risk-index entries from its state in Redis (after
 * rows were replayed without the index). `maybeStale`: symbols it may still
 * be indexed under though it no longer holds them.
 */
export async function reindexAccount(
  redis: RedisClient,
  keys: KeySpace,
  risk: RiskKeys,
  markBook: MarkBook,
  riskDefaults: RiskParams,
  accountId: number,
  maybeStale: Iterable<string>,
): Promise<void> {
  const [hash, book] = await redisCall(() => Promise.all([redis.hgetall(keys.account(accountId).state), markBook.snapshot(markBook.shardOf(accountId))]));
  const account = parseAccount(accountId, hash);
  const rules = marketRules(book.markets, riskDefaults);
  const thresholds = liquidationThresholds(account, book.marks, rules);
  const tiered = tieredEntries(account, book.marks, rules);
  // Guarded by the seq it was computed at: a writer that moved the account on meanwhile indexed it itself.
  await redisCall(() =>
    reindexAt(redis, keys, accountId, account.seq, (w) => {
      queueIndexRemoval(w, risk, accountId, [...maybeStale].filter((s) => !account.positions.has(s)));
      queueIndexUpdate(w, risk, accountId, null, thresholds, tiered);
    }),
  );
}
