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
 * Keys (global, outside any account's hash tag):
 *   idx:<symbol>:long   zset  −threshold  (ascending = riskiest first; liquidatable when threshold > mark)
 *   idx:<symbol>:short  zset  threshold   (ascending = riskiest first; liquidatable when threshold < mark)
 *   multi:<symbol>      set   accounts holding this symbol and at least one other
 *   multi               set   accounts holding two or more symbols
 *   flat                zset  accounts with no position (score 0, ordered by id)
 *   symbols             set   every symbol ever indexed
 *   rev                 counter, bumped by every change to an account or a mark
 */
import type { ChainableCommander, Redis } from 'ioredis';
import type { Dec } from '../domain/decimal.js';
import type { Threshold } from '../domain/liquidation.js';
import type { KeySpace } from './redis.js';

/** Zero-padded, so the sorted sets' member order is numeric order. */
export const member = (accountId: number) => String(accountId).padStart(16, '0');
export const accountOf = (m: string) => Number.parseInt(m, 10);

const buffer = new DataView(new ArrayBuffer(8));
function step(x: number, up: boolean): number {
  if (Number.isNaN(x) || x === (up ? Infinity : -Infinity)) return x;
  if (x === 0) return up ? Number.MIN_VALUE : -Number.MIN_VALUE;
  buffer.setFloat64(0, x);
  let bits = buffer.getBigUint64(0);
  bits = (x > 0) === up ? bits + 1n : bits - 1n;
  buffer.setBigUint64(0, bits);
  return buffer.getFloat64(0);
}

/** A double no smaller than `d` (the nearest double, then two steps up to cover its rounding). */
export function scoreAtLeast(d: Dec): number {
  return step(step(Number(d.toString()), true), true);
}

/** A double no larger than `d`. */
export function scoreAtMost(d: Dec): number {
  return step(step(Number(d.toString()), false), false);
}

export class RiskKeys {
  constructor(private readonly keys: KeySpace) {}
  long = (symbol: string) => `${this.keys.prefix}:idx:${symbol}:long`;
  short = (symbol: string) => `${this.keys.prefix}:idx:${symbol}:short`;
  multiOf = (symbol: string) => `${this.keys.prefix}:multi:${symbol}`;
  get multi() {
    return `${this.keys.prefix}:multi`;
  }
  get flat() {
    return `${this.keys.prefix}:flat`;
  }
  get symbols() {
    return `${this.keys.prefix}:symbols`;
  }
  get rev() {
    return `${this.keys.prefix}:rev`;
  }
}

/** The score a threshold is stored under (see the key table above). */
function scoreOf(t: Threshold): number {
  if (t.price === 'always') return -Infinity; // riskiest of all on either side
  if (t.price === null) return Infinity; // never liquidated by this symbol alone
  return t.side === 'long' ? -scoreAtLeast(t.price) : scoreAtMost(t.price);
}

/**
 * Queues on `p` the commands that move an account's index entries from its
 * old symbols to its new thresholds. `before` lists the symbols it was indexed
 * under; `after` its thresholds now (empty: no positions).
 */
export function queueIndexUpdate(
  p: ChainableCommander | Redis,
  rk: RiskKeys,
  accountId: number,
  before: ReadonlySet<string>,
  after: ReadonlyMap<string, Threshold>,
): void {
  const m = member(accountId);
  for (const symbol of before) {
    if (!after.has(symbol)) {
      void p.zrem(rk.long(symbol), m);
      void p.zrem(rk.short(symbol), m);
      void p.srem(rk.multiOf(symbol), m);
    }
  }
  const isMulti = after.size > 1;
  for (const [symbol, t] of after) {
    const [add, remove] = t.side === 'long' ? [rk.long(symbol), rk.short(symbol)] : [rk.short(symbol), rk.long(symbol)];
    void p.zadd(add, scoreOf(t), m);
    if (before.has(symbol)) void p.zrem(remove, m); // the position may have flipped
    if (!before.has(symbol)) void p.sadd(rk.symbols, symbol);
    if (isMulti) void p.sadd(rk.multiOf(symbol), m);
    else if (before.has(symbol)) void p.srem(rk.multiOf(symbol), m);
  }
  if (isMulti) void p.sadd(rk.multi, m);
  else void p.srem(rk.multi, m);
  if (after.size === 0) void p.zadd(rk.flat, 0, m);
  else void p.zrem(rk.flat, m);
}

/** Accounts whose threshold on `symbol` says the mark `price` may put them under maintenance. */
export async function endangeredBy(redis: Redis, rk: RiskKeys, symbol: string, price: Dec): Promise<number[]> {
  const [longs, shorts] = await Promise.all([
    // long: liquidatable when threshold > mark, i.e. score (−threshold) < −mark
    redis.zrangebyscore(rk.long(symbol), '-inf', -scoreAtMost(price)),
    // short: liquidatable when threshold < mark
    redis.zrangebyscore(rk.short(symbol), '-inf', scoreAtLeast(price)),
  ]);
  return [...longs, ...shorts].map(accountOf);
}
