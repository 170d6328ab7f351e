/**
 * Keeps a derived value on the object it was derived from, under a symbol,
 * non-enumerable: it is not part of the object's value (comparisons, copies
 * and JSON do not see it). A property rather than a WeakMap entry: the
 * engine makes new positions at its trade rate, and V8 processes WeakMap
 * entries in the atomic pause of every full GC (they made those pauses
 * 7.5–20 ms against 3.4–12 ms without; see docs/benchmarks.md).
 */
export function remember<T>(holder: object, key: symbol, value: T): T {
  Object.defineProperty(holder, key, { value, writable: true, configurable: true });
  return value;
}
