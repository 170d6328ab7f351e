/** Zero-padded, so the sorted sets' member order is numeric order. */
export const member = (accountId) => String(accountId).padStart(16, '0');
export const accountOf = (m) => Number.parseInt(m, 10);
/**
 * The 64 bits of one double as two 32-bit words (the platform's byte order),
 * so stepping to a neighbouring double is integer arithmetic on the words
 * instead of a BigInt round trip.
 */
const f64 = new Float64Array(1);
const words = new Uint32Array(f64.buffer);
const LOW = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 0 : 1;
const HIGH = 1 - LOW;
/** The neighbouring double of `x` towards +∞ (`up`) or −∞. */
export function step(x, up) {
    if (Number.isNaN(x) || x === (up ? Infinity : -Infinity))
        return x;
    if (x === 0)
        return up ? Number.MIN_VALUE : -Number.MIN_VALUE;
    f64[0] = x;
    // Away from zero adds one to the magnitude's bit pattern; towards zero subtracts one.
    if ((x > 0) === up) {
        if (words[LOW] === 0xffffffff) {
            words[LOW] = 0;
            words[HIGH] += 1;
        }
        else
            words[LOW] += 1;
    }
    else if (words[LOW] === 0) {
        words[LOW] = 0xffffffff;
        words[HIGH] -= 1;
    }
    else
        words[LOW] -= 1;
    return f64[0];
}
/** A double no smaller than `d` (the nearest double, then two steps up to cover its rounding). */
export function scoreAtLeast(d) {
    return step(step(Number(d.toString()), true), true);
}
/** A double no larger than `d`. */
export function scoreAtMost(d) {
    return step(step(Number(d.toString()), false), false);
}
/** Three steps outward from a double within 1.5 units in the last place of the true value. */
const outward = (x, up) => step(step(step(x, up), up), up);
export class RiskKeys {
    keys;
    constructor(keys) {
        this.keys = keys;
    }
    names = new Map();
    /** Each symbol's key names, built once (a trade names two or three of them). */
    of(symbol) {
        let n = this.names.get(symbol);
        if (n === undefined) {
            const p = this.keys.prefix;
            if (this.names.size >= 10_000)
                this.names.clear(); // bounded, whatever symbols clients send
            n = { long: `${p}:idx:${symbol}:long`, short: `${p}:idx:${symbol}:short`, multi: `${p}:multi:${symbol}` };
            this.names.set(symbol, n);
        }
        return n;
    }
    long = (symbol) => this.of(symbol).long;
    short = (symbol) => this.of(symbol).short;
    multiOf = (symbol) => this.of(symbol).multi;
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
        return this.keys.rev;
    }
}
/** The score a threshold is stored under (see the key table above). */
export function scoreOf(t) {
    const x = t.approx();
    if (x === 'always')
        return -Infinity; // riskiest of all on either side
    if (x === null)
        return Infinity; // never liquidated by this symbol alone
    return t.side === 'long' ? -outward(x, true) : outward(x, false);
}
/** The sides an account's positions are indexed under. */
export function sidesOf(positions) {
    return new Map([...positions].map(([symbol, p]) => [symbol, p.quantity.isPos() ? 'long' : 'short']));
}
/**
 * Queues on `p` the commands that move an account's index entries from how
 * it was indexed (`before`: symbol → side) to its thresholds now (`after`;
 * empty: no positions). Only what changed is written: a trade that keeps a
 * position on its side costs one ZADD. `before` null means unknown (a new
 * account, a rebuild): everything for `after` is written.
 */
export function queueIndexUpdate(p, rk, accountId, before, after) {
    const m = member(accountId);
    const full = before === null;
    const wasMulti = !full && before.size > 1;
    const isMulti = after.size > 1;
    for (const [symbol, side] of before ?? []) {
        if (after.has(symbol))
            continue;
        p.zrem(side === 'long' ? rk.long(symbol) : rk.short(symbol), m);
        if (wasMulti)
            p.srem(rk.multiOf(symbol), m);
    }
    for (const [symbol, t] of after) {
        const previous = before?.get(symbol);
        const [list, other] = t.side === 'long' ? [rk.long(symbol), rk.short(symbol)] : [rk.short(symbol), rk.long(symbol)];
        p.zadd(list, scoreOf(t), m);
        if (full || (previous !== undefined && previous !== t.side))
            p.zrem(other, m); // the position flipped
        if (previous === undefined)
            p.sadd(rk.symbols, symbol);
        if (isMulti && (full || !wasMulti || previous === undefined))
            p.sadd(rk.multiOf(symbol), m);
        if (!isMulti && (full || wasMulti))
            p.srem(rk.multiOf(symbol), m);
    }
    if (full || isMulti !== wasMulti) {
        if (isMulti)
            p.sadd(rk.multi, m);
        else
            p.srem(rk.multi, m);
    }
    const wasFlat = !full && before.size === 0;
    if (after.size === 0 && !wasFlat)
        p.zadd(rk.flat, 0, m);
    if (after.size > 0 && (full || wasFlat))
        p.zrem(rk.flat, m);
}
/** Removes an account from the lists of symbols it no longer holds (when how it was indexed is unknown). */
export function queueIndexRemoval(p, rk, accountId, symbols) {
    const m = member(accountId);
    for (const symbol of symbols) {
        p.zrem(rk.long(symbol), m);
        p.zrem(rk.short(symbol), m);
        p.srem(rk.multiOf(symbol), m);
    }
}
/** Accounts whose threshold on `symbol` says the mark `price` may put them under maintenance. */
export async function endangeredBy(redis, rk, symbol, price) {
    const [longs, shorts] = await Promise.all([
        // long: liquidatable when threshold > mark, i.e. score (−threshold) < −mark
        redis.zrangebyscore(rk.long(symbol), '-inf', -scoreAtMost(price)),
        // short: liquidatable when threshold < mark
        redis.zrangebyscore(rk.short(symbol), '-inf', scoreAtLeast(price)),
    ]);
    return [...longs, ...shorts].map(accountOf);
}
//# sourceMappingURL=risk-index.js.map