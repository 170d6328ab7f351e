/**
 * The risk index: for every symbol, the accounts holding it, scored by the
 * mark at which they would fall below maintenance (their threshold). A tick
 * finds the accounts it endangers with one range query per side; the margin
 * report walks the same sorted sets riskiest first.
 *
 * Scores are binary doubles, so they only choose candidates: each is rounded
 * outward (a long's threshold up, a short's down) and every candidate is then
 * checked exactly in decimal. A double never decides a liquidation.
 *
 * Keys, per index shard (each under its shard's hash tag `<prefix>:{T_k}`,
 * beside the shard's accounts; see redis.ts), holding that shard's accounts:
 *   idx:<symbol>:long   zset  −threshold  (ascending = riskiest first; liquidatable when threshold > mark)
 *   idx:<symbol>:short  zset  threshold   (ascending = riskiest first; liquidatable when threshold < mark)
 *   multi:<symbol>      set   accounts holding this symbol and at least one other
 *   multi               set   accounts holding two or more symbols
 *   flat                zset  accounts with no position (score 0, ordered by id)
 *   symbols             set   every symbol ever indexed
 *   rev                 counter, bumped by every change to one of the shard's accounts or a mark
 *
 * For a market with more than one tier, also (the margin report's order; see
 * docs/architecture.md, "Margin report"):
 *   rep:<symbol>:long   zset  −tier-one threshold (ascending = riskiest first among first-tier positions)
 *   rep:<symbol>:short  zset  tier-one threshold
 *   size:<symbol>       zset  |q| (the positions beyond the first tier at mark m: |q| > bound / m)
 */
import type { Dec } from '../domain/decimal.js';
import type { MarginCallRange } from '../domain/margin-calls.js';
import { tierOneOrders, type Threshold, type TierOneOrder } from '../domain/liquidation.js';
import type { AccountState, MarginRules, MarginTotals, Marks } from '../domain/margin.js';
import type { KeySpace, RedisClient, ShardKeys } from './redis.js';

/** Zero-padded, so the sorted sets' member order is numeric order. */
export const member = (accountId: number) => String(accountId).padStart(16, '0');
export const accountOf = (m: string) => Number.parseInt(m, 10);

/**
 * The neighbouring double of `x` towards +∞ (`up`) or −∞: the scores are
 * rounded outward with it (a candidate is never lost to a double's rounding).
 * Adjacent doubles of one sign have adjacent bit patterns, so away from zero
 * adds one to the magnitude's bits and towards zero subtracts one.
 */
const bits = new DataView(new ArrayBuffer(8));
export function step(x: number, up: boolean): number {
  if (Number.isNaN(x) || x === (up ? Infinity : -Infinity)) return x;
  if (x === 0) return up ? Number.MIN_VALUE : -Number.MIN_VALUE;
  bits.setFloat64(0, x);
  const b = bits.getBigUint64(0);
  bits.setBigUint64(0, (x > 0) === up ? b + 1n : b - 1n);
  return bits.getFloat64(0);
}

/** A double no smaller than `d` (the nearest double, then two steps up to cover its rounding). */
export function scoreAtLeast(d: Dec): number {
  return step(step(Number(d.toString()), true), true);
}

/** A double no larger than `d`. */
export function scoreAtMost(d: Dec): number {
  return step(step(Number(d.toString()), false), false);
}

/** Three steps outward from a double within 1.5 units in the last place of the true value. */
const outward = (x: number, up: boolean) => step(step(step(x, up), up), up);

/** One shard's risk-index keys. */
export class ShardRiskKeys {
  private readonly base: string;
  constructor(readonly keys: ShardKeys) {
    this.base = keys.base;
  }
  long = (symbol: string) => `${this.base}:idx:${symbol}:long`;
  short = (symbol: string) => `${this.base}:idx:${symbol}:short`;
  multiOf = (symbol: string) => `${this.base}:multi:${symbol}`;
  repLong = (symbol: string) => `${this.base}:rep:${symbol}:long`;
  repShort = (symbol: string) => `${this.base}:rep:${symbol}:short`;
  size = (symbol: string) => `${this.base}:size:${symbol}`;
  get shard() {
    return this.keys.shard;
  }
  get multi() {
    return `${this.base}:multi`;
  }
  get flat() {
    return `${this.base}:flat`;
  }
  get symbols() {
    return `${this.base}:symbols`;
  }
  get rev() {
    return this.keys.rev;
  }
}

/** The risk index's keys, shard by shard: an account is indexed in its own shard; readers take every shard. */
export class RiskKeys {
  readonly shards: readonly ShardRiskKeys[];
  constructor(readonly keys: KeySpace) {
    this.shards = keys.shards.map((k) => new ShardRiskKeys(k));
  }
  /** The shard account `accountId` is indexed in. */
  of(accountId: number): ShardRiskKeys {
    return this.shards[this.keys.shardOf(accountId)]!;
  }
}

/** The score a threshold is stored under (see the key table above). */
export function scoreOf(t: Threshold): number {
  // From the threshold divided out to 18 places, not from its numerator and
  // slope as doubles: equal thresholds then get equal scores whatever their
  // representation, and the list orders them by account id as the margin
  // report does (two accounts with the same threshold, and so the same
  // utilisation, stay in report order). The 18-place quotient is within
  // 0.5·10^-18 of the exact one, far below a unit in the last place.
  const p = t.price;
  if (p === 'always') return -Infinity; // riskiest of all on either side
  if (p === null) return Infinity; // never liquidated by this symbol alone
  const x = Number(p.toString());
  return t.side === 'long' ? -outward(x, true) : outward(x, false);
}

export type IndexedSides = ReadonlyMap<string, 'long' | 'short'>;

/** The report-order entries of an account's positions in markets with more than one tier, and which symbols those markets are. */
export interface TieredEntries {
  readonly entries: ReadonlyMap<string, TierOneOrder>;
  readonly tiered: (symbol: string) => boolean;
}

const NO_ENTRIES: ReadonlyMap<string, TierOneOrder> = new Map();
const TIERED = Symbol('tiered');

/** The tiered entries of an account's state at these marks (`totals`: its margin totals there, when already taken). */
export function tieredEntries(state: AccountState, marks: Marks, rules: MarginRules, totals?: MarginTotals): TieredEntries {
  // Kept on the rules object (one per book), so the common case, no tiered market held, allocates nothing.
  const holder = rules as { [TIERED]?: (symbol: string) => boolean };
  const tiered = (holder[TIERED] ??= (symbol) => rules.paramsOf(symbol).tiers.length > 1);
  let any = false;
  for (const symbol of state.positions.keys()) if (tiered(symbol)) any = true;
  return { entries: any ? tierOneOrders(state, marks, rules, totals) : NO_ENTRIES, tiered };
}

/** Where index commands go: an explicit pipeline, or a Commands collector on the auto-pipelined client. */
export interface IndexWriter {
  zadd(key: string, score: number, member: string): unknown;
  zrem(key: string, member: string): unknown;
  sadd(key: string, member: string): unknown;
  srem(key: string, member: string): unknown;
}

/** The sides an account's positions are indexed under. */
export function sidesOf(positions: ReadonlyMap<string, { quantity: Dec }>): IndexedSides {
  const sides = new Map<string, 'long' | 'short'>();
  for (const [symbol, p] of positions) sides.set(symbol, p.quantity.isPos() ? 'long' : 'short');
  return sides;
}

/**
 * Queues on `p` the commands that move an account's index entries from how
 * it was indexed (`before`: symbol → side) to its thresholds now (`after`;
 * empty: no positions). Only what changed is written: a trade that keeps a
 * position on its side costs one ZADD. `before` null means unknown (a new
 * account, a rebuild): everything for `after` is written.
 */
export function queueIndexUpdate(
  p: IndexWriter,
  risk: RiskKeys,
  accountId: number,
  before: IndexedSides | null,
  after: ReadonlyMap<string, Threshold>,
  tiered?: TieredEntries,
): void {
  const rk = risk.of(accountId);
  const m = member(accountId);
  const full = before === null;
  const wasMulti = !full && before.size > 1;
  const isMulti = after.size > 1;
  for (const [symbol, side] of before ?? []) {
    if (after.has(symbol)) continue;
    p.zrem(side === 'long' ? rk.long(symbol) : rk.short(symbol), m);
    if (wasMulti) p.srem(rk.multiOf(symbol), m);
    if (tiered?.tiered(symbol)) {
      p.zrem(side === 'long' ? rk.repLong(symbol) : rk.repShort(symbol), m);
      p.zrem(rk.size(symbol), m);
    }
  }
  for (const [symbol, t] of after) {
    const previous = before?.get(symbol);
    const flipped = full || (previous !== undefined && previous !== t.side);
    const [list, other] = t.side === 'long' ? [rk.long(symbol), rk.short(symbol)] : [rk.short(symbol), rk.long(symbol)];
    p.zadd(list, scoreOf(t), m);
    if (flipped) p.zrem(other, m); // the position flipped
    const order = tiered?.entries.get(symbol);
    if (order !== undefined) {
      const [rep, repOther] = t.side === 'long' ? [rk.repLong(symbol), rk.repShort(symbol)] : [rk.repShort(symbol), rk.repLong(symbol)];
      p.zadd(rep, scoreOf(order.order), m);
      if (flipped) p.zrem(repOther, m);
      p.zadd(rk.size(symbol), Number(order.size.toString()), m);
    }
    if (previous === undefined) p.sadd(rk.symbols, symbol);
    if (isMulti && (full || !wasMulti || previous === undefined)) p.sadd(rk.multiOf(symbol), m);
    if (!isMulti && (full || wasMulti)) p.srem(rk.multiOf(symbol), m);
  }
  if (full || isMulti !== wasMulti) {
    if (isMulti) p.sadd(rk.multi, m);
    else p.srem(rk.multi, m);
  }
  const wasFlat = !full && before.size === 0;
  if (after.size === 0 && !wasFlat) p.zadd(rk.flat, 0, m);
  if (after.size > 0 && (full || wasFlat)) p.zrem(rk.flat, m);
}

/** Removes an account from the lists of symbols it no longer holds (when how it was indexed is unknown). */
export function queueIndexRemoval(p: IndexWriter, risk: RiskKeys, accountId: number, symbols: Iterable<string>): void {
  const rk = risk.of(accountId);
  const m = member(accountId);
  for (const symbol of symbols) {
    p.zrem(rk.long(symbol), m);
    p.zrem(rk.short(symbol), m);
    p.srem(rk.multiOf(symbol), m);
    p.zrem(rk.repLong(symbol), m);
    p.zrem(rk.repShort(symbol), m);
    p.zrem(rk.size(symbol), m);
  }
}

/** The range reads that find the accounts whose threshold on `symbol` says the mark `price` may put them under maintenance (see lua/marks-publish.lua). */
export function endangeredRanges(price: Dec): { longMax: number; shortMax: number } {
  // long: liquidatable when threshold > mark, i.e. score (−threshold) < −mark; short: when threshold < mark
  return { longMax: -scoreAtMost(price), shortMax: scoreAtLeast(price) };
}

/** Accounts of one shard whose threshold on `symbol` says the mark `price` may put them under maintenance. */
export async function endangeredIn(redis: RedisClient, rk: ShardRiskKeys, symbol: string, price: Dec): Promise<number[]> {
  const { longMax, shortMax } = endangeredRanges(price);
  const [longs, shorts] = await Promise.all([redis.zrangebyscore(rk.long(symbol), '-inf', longMax), redis.zrangebyscore(rk.short(symbol), '-inf', shortMax)]);
  return [...longs, ...shorts].map(accountOf);
}

/** Accounts whose threshold on `symbol` says the mark `price` may put them under maintenance: every shard, read in parallel. */
export async function endangeredBy(redis: RedisClient, risk: RiskKeys, symbol: string, price: Dec): Promise<number[]> {
  return (await Promise.all(risk.shards.map((rk) => endangeredIn(redis, rk, symbol, price)))).flat();
}

/** Every shard's members of the key `key(shard)` names (a set or a whole sorted set), read in parallel, as account ids. */
export async function membersOfAll(redis: RedisClient, risk: RiskKeys, key: (rk: ShardRiskKeys) => string, kind: 'set' | 'zset'): Promise<number[]> {
  const lists = await Promise.all(risk.shards.map((rk) => (kind === 'set' ? redis.smembers(key(rk)) : redis.zrange(key(rk), 0, -1))));
  return lists.flat().map(accountOf);
}

/** Every holder of `symbol` (long or short), from every shard's lists, read in parallel. */
export async function holdersOf(redis: RedisClient, risk: RiskKeys, symbol: string): Promise<number[]> {
  const [longs, shorts] = await Promise.all([membersOfAll(redis, risk, (rk) => rk.long(symbol), 'zset'), membersOfAll(redis, risk, (rk) => rk.short(symbol), 'zset')]);
  return [...new Set([...longs, ...shorts])];
}

/**
 * The report revision: every shard's counter, read in parallel and joined
 * (`r0.r1…`; with one shard just its counter). Every change to an account
 * bumps its shard's counter and every mark bumps them all, so the tuple
 * changes on every change.
 */
export async function revision(redis: RedisClient, risk: RiskKeys): Promise<string> {
  const revs = await Promise.all(risk.shards.map((rk) => redis.get(rk.rev)));
  return revs.map((r) => r ?? '0').join('.');
}

/**
 * Accounts a tick on `symbol` may take below initial margin (see
 * domain/margin-calls.ts `marginCallRange`): the holders whose maintenance
 * threshold lies in the range, in every shard (read in parallel), read from `idx` (one tier) or from the
 * tier-one lists `rep` (a tiered market), plus, for a tiered market, every
 * position large enough to leave the first tier at `mark` (|q| above
 * `sizeAbove`), which the linear scaling does not cover. 'all': every
 * holder. Candidates only: each is checked exactly.
 */
export async function marginCallCandidates(
  redis: RedisClient,
  risk: RiskKeys,
  symbol: string,
  range: MarginCallRange | 'all',
  tiered: boolean,
  sizeAbove: Dec | null,
): Promise<number[]> {
  const reads: Promise<string[]>[] = [];
  for (const rk of risk.shards) candidateReads(redis, rk, symbol, range, tiered, sizeAbove, reads);
  const lists = await Promise.all(reads);
  return [...new Set(lists.flat())].map(accountOf);
}

/** One shard's reads for marginCallCandidates, pushed onto `reads`. */
function candidateReads(
  redis: RedisClient,
  rk: ShardRiskKeys,
  symbol: string,
  range: MarginCallRange | 'all',
  tiered: boolean,
  sizeAbove: Dec | null,
  reads: Promise<string[]>[],
): void {
  if (range === 'all') {
    reads.push(redis.zrange(rk.long(symbol), 0, -1), redis.zrange(rk.short(symbol), 0, -1));
  } else if (range.side === 'long') {
    // long scores are −threshold
    reads.push(redis.zrangebyscore(tiered ? rk.repLong(symbol) : rk.long(symbol), -scoreAtLeast(range.high), -scoreAtMost(range.low)));
  } else {
    reads.push(redis.zrangebyscore(tiered ? rk.repShort(symbol) : rk.short(symbol), scoreAtMost(range.low), scoreAtLeast(range.high)));
  }
  if (range !== 'all' && tiered && sizeAbove !== null) reads.push(redis.zrangebyscore(rk.size(symbol), scoreAtMost(sizeAbove), '+inf'));
}
