import slotOf from 'cluster-key-slot';
import { describe, expect, it } from 'vitest';
import { KeySpace, SLOTS, shardTags } from '../../src/store/redis.js';
import { RiskKeys } from '../../src/store/risk-index.js';
import { checkOneSlot } from '../../src/store/scripts.js';

describe('index shards', () => {
  it('puts each shard tag near the middle of its own sixteenth of the slots, the same on every call', () => {
    const tags = shardTags(16);
    expect(tags).toEqual(shardTags(16));
    expect(new Set(tags).size).toBe(16);
    tags.forEach((tag, k) => {
      const slot = slotOf(tag);
      expect(slot).toBeGreaterThanOrEqual((k * SLOTS) / 16);
      expect(slot).toBeLessThan(((k + 1) * SLOTS) / 16);
      expect(Math.abs(slot - (k + 0.5) * (SLOTS / 16))).toBeLessThanOrEqual(1);
    });
  });

  it('gives three primaries with contiguous slot ranges an equal share of 3, 6 and 12 shards', () => {
    // redis-cli --cluster create splits 16384 slots into three ranges: 0-5460, 5461-10922, 10923-16383.
    const primaryOf = (slot: number) => (slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2);
    for (const shards of [3, 6, 12]) {
      const counts = [0, 0, 0];
      for (const tag of shardTags(shards)) counts[primaryOf(slotOf(tag))]!++;
      expect(counts).toEqual([shards / 3, shards / 3, shards / 3]);
    }
  });

  it('keeps every key of an account, and its index entries, marks copy and revision, in its shard\'s slot', () => {
    const keys = new KeySpace('me', 0, 4);
    const risk = new RiskKeys(keys);
    for (const id of [1, 2, 3, 4, 5, 1000003]) {
      const shard = keys.shardFor(id);
      expect(shard.shard).toBe(id % 4);
      const rk = risk.of(id);
      const all = [...Object.values(keys.account(id)), shard.marks, shard.marklog, shard.rev, shard.accounts, rk.long('BTC-PERP'), rk.short('X'), rk.multi, rk.multiOf('X'), rk.flat, rk.symbols, rk.repLong('X'), rk.size('X')];
      expect(new Set(all.map((k) => slotOf(k)))).toEqual(new Set([slotOf(shard.tag)]));
    }
    // Different shards, different slots.
    expect(new Set(keys.shards.map((s) => slotOf(s.marks))).size).toBe(4);
  });

  it('names the keys under the prefix and the shard tag', () => {
    const keys = new KeySpace('me', 0, 1);
    const tag = shardTags(1)[0]!;
    expect(keys.account(7).state).toBe(`me:{${tag}}:a7:state`);
    expect(keys.first.marks).toBe(`me:{${tag}}:marks`);
    expect(new RiskKeys(keys).of(7).long('BTC-PERP')).toBe(`me:{${tag}}:idx:BTC-PERP:long`);
    expect(keys.engines).toBe('me:engines');
  });

  it('groups account ids by shard, in the order given', () => {
    const keys = new KeySpace('me', 0, 3);
    expect([...keys.groupByShard([5, 3, 4, 6, 1], (id) => id)]).toEqual([
      [2, [5]],
      [0, [3, 6]],
      [1, [4, 1]],
    ]);
  });

  it('refuses, when asserting (as the tests do), a script call whose keys span slots', () => {
    expect(process.env.REDIS_ASSERT_ONE_SLOT).toBe('1');
    const keys = new KeySpace('me', 0, 2);
    expect(() => checkOneSlot([keys.account(2).state, keys.shards[0]!.rev])).not.toThrow();
    expect(() => checkOneSlot([keys.account(1).state, keys.shards[0]!.rev])).toThrow(/script keys span slots/);
  });
});
