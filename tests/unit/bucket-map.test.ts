import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BucketMap } from '../../src/store/bucket-map.js';

describe('BucketMap', () => {
  it('behaves like a Map under any sequence of sets and deletes, and leaves earlier versions unchanged', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.string({ maxLength: 6 }), fc.option(fc.integer(), { nil: undefined })), { maxLength: 200 }), (ops) => {
        let map = BucketMap.empty<number>();
        const model = new Map<string, number>();
        const versions: [BucketMap<number>, Map<string, number>][] = [];
        for (const [key, value] of ops) {
          versions.push([map, new Map(model)]);
          map = map.with([[key, value]]);
          if (value === undefined) model.delete(key);
          else model.set(key, value);
          expect(map.size).toBe(model.size);
          expect(map.get(key)).toBe(model.get(key));
          expect(map.has(key)).toBe(model.has(key));
        }
        expect(new Map(map)).toEqual(model);
        for (const [old, was] of versions) expect(new Map(old)).toEqual(was);
      }),
    );
  });

  it('shares the buckets a change does not touch', () => {
    const base = BucketMap.from(Array.from({ length: 5000 }, (_, i) => [`JUNK${i}`, i] as [string, number]));
    const next = base.with([['JUNK7', -1]]);
    expect(next.get('JUNK7')).toBe(-1);
    expect(base.get('JUNK7')).toBe(7);
    expect(next.size).toBe(5000);
    const shared = (base as unknown as { buckets: unknown[] }).buckets.filter((b, i) => b === (next as unknown as { buckets: unknown[] }).buckets[i]);
    expect(shared.length).toBe(255);
  });
});
