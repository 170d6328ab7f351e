/**
 * An immutable map whose updates copy only what they touch: entries live in
 * BUCKETS small maps chosen by a hash of the key, and `with()` returns a new
 * map sharing every bucket it did not change. The mark book keeps every
 * market's mark in one of these, so a tick that changes one symbol costs a
 * copy of one bucket (about 1/256 of the markets) instead of all of them,
 * and books already handed to operations never change under them.
 */
const BUCKETS = 256;

function bucketOf(key: string): number {
  // FNV-1a over the UTF-16 code units; symbols are short ASCII.
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % BUCKETS;
}

const EMPTY: ReadonlyMap<string, unknown> = new Map<string, unknown>();

export class BucketMap<V> implements ReadonlyMap<string, V> {
  private constructor(
    private readonly buckets: readonly ReadonlyMap<string, V>[],
    readonly size: number,
  ) {}

  static empty<V>(): BucketMap<V> {
    return new BucketMap<V>(new Array<ReadonlyMap<string, V>>(BUCKETS).fill(EMPTY as ReadonlyMap<string, V>), 0);
  }

  static from<V>(entries: Iterable<[string, V]>): BucketMap<V> {
    return BucketMap.empty<V>().with(entries);
  }

  get(key: string): V | undefined {
    return this.buckets[bucketOf(key)]!.get(key);
  }

  has(key: string): boolean {
    return this.buckets[bucketOf(key)]!.has(key);
  }

  /** A new map with these changes (`undefined` removes the key); this one is left as it is. */
  with(changes: Iterable<[string, V | undefined]>): BucketMap<V> {
    const buckets = [...this.buckets];
    const copied = new Set<number>();
    let size = this.size;
    for (const [key, value] of changes) {
      const b = bucketOf(key);
      if (!copied.has(b)) {
        buckets[b] = new Map(buckets[b]);
        copied.add(b);
      }
      const bucket = buckets[b] as Map<string, V>;
      const had = bucket.has(key);
      if (value === undefined) {
        if (had) size--;
        bucket.delete(key);
      } else {
        if (!had) size++;
        bucket.set(key, value);
      }
    }
    return new BucketMap(buckets, size);
  }

  *entries(): MapIterator<[string, V]> {
    for (const bucket of this.buckets) yield* bucket.entries();
  }

  *keys(): MapIterator<string> {
    for (const bucket of this.buckets) yield* bucket.keys();
  }

  *values(): MapIterator<V> {
    for (const bucket of this.buckets) yield* bucket.values();
  }

  [Symbol.iterator](): MapIterator<[string, V]> {
    return this.entries();
  }

  forEach(callback: (value: V, key: string, map: ReadonlyMap<string, V>) => void): void {
    for (const [key, value] of this.entries()) callback(value, key, this);
  }
}
