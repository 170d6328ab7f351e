/**
 * The account scripts against real Redis: concurrent peeks and applies share
 * one script call, and each item in it is judged on its own (a stale item
 * is skipped without touching the others).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { applyAccount, peekAccount, type AccountUpdate } from '../../src/store/account-state.js';
import { BOOT_FIELD, EPOCH_FIELD } from '../../src/store/marks-hash.js';
import { KeySpace } from '../../src/store/redis.js';
import { RiskKeys } from '../../src/store/risk-index.js';
import { inspector, newIsolation, type Inspector, type Isolation } from '../helpers/engine.js';

let iso: Isolation;
let db: Inspector;
let keys: KeySpace;
let tests = 0;

beforeAll(() => {
  iso = newIsolation();
  db = inspector(iso);
});

// Each test its own key space (under the isolation's prefix, so destroy() removes it): none sees another's writes.
beforeEach(() => {
  keys = new KeySpace(`${iso.prefix}:${++tests}`);
});

afterAll(async () => {
  await db?.destroy();
});

const update = (accountId: number, expectedSeq: number, balance: string): AccountUpdate => ({
  accountId,
  expectedSeq,
  seq: expectedSeq + 1,
  balance,
  set: [{ symbol: 'BTC-PERP', quantity: '0.5', entryPrice: '50000' }],
  remove: [],
});

describe('batched account scripts', () => {
  // Made in the same tick, the three applies (and then the three peeks) go out as one script call (see the Batcher's unit tests).
  it('applies concurrent updates together, skipping only the one whose expected seq is stale', async () => {
    const { redis } = db;
    const longs = new RiskKeys(keys).of(3).long('BTC-PERP');
    await redis.hset(keys.first.marks, BOOT_FIELD, '1', EPOCH_FIELD, '7', 'BTC-PERP', '50000');
    await redis.hset(keys.account(2).state, 'seq', '5', 'bal', '10');
    const [a, b, c] = await Promise.all([
      applyAccount(redis, keys, { update: update(1, 0, '100'), isNew: true }),
      applyAccount(redis, keys, { update: update(2, 3, '999') }), // Redis is at 5, not 3
      applyAccount(redis, keys, { update: update(3, 0, '300'), isNew: true, index: (w) => w.zadd(longs, -45000, '3') }),
    ]);
    expect([a.applied, b.applied, c.applied]).toEqual([true, false, true]);
    expect(a).toMatchObject({ marksEpoch: '7', boot: '1' });
    expect(await redis.hgetall(keys.account(1).state)).toEqual({ seq: '1', bal: '100', 'q:BTC-PERP': '0.5', 'e:BTC-PERP': '50000' });
    expect(await redis.hgetall(keys.account(2).state)).toEqual({ seq: '5', bal: '10' }); // untouched
    expect(await redis.zscore(longs, '3')).toBe('-45000');
    expect((await redis.smembers(keys.first.accounts)).sort()).toEqual(['1', '3']);
  });

  it('peeks many accounts in one call: full state only for a stale cached copy, locks and client orders per account', async () => {
    const { redis } = db;
    // Marks at epoch 7, and accounts 1 and 3 at seq 1 (account 3 with 300 and a position), as applies leave them.
    await redis.hset(keys.first.marks, BOOT_FIELD, '1', EPOCH_FIELD, '7', 'BTC-PERP', '50000');
    for (const [id, balance] of [[1, '100'], [3, '300']] as const) {
      expect((await applyAccount(redis, keys, { update: update(id, 0, balance), isNew: true })).applied).toBe(true);
    }
    await redis.set(keys.account(2).lock, 'someone');
    await redis.hset(keys.account(3).clientOrders, 'order-1', '{"stored":true}');
    const [one, two, three] = await Promise.all([
      peekAccount(redis, keys, 1, 1, null), // cached copy is current: no state sent
      peekAccount(redis, keys, 2, null, null), // locked by another writer
      peekAccount(redis, keys, 3, null, 'order-1'), // no cached copy: state sent
    ]);
    expect(one).toMatchObject({ free: true, seq: 1, account: null, clientOrder: null, marksEpoch: '7' });
    expect(two).toEqual({ free: false, marksEpoch: '7', boot: '1' });
    expect(three).toMatchObject({ free: true, seq: 1, clientOrder: '{"stored":true}' });
    expect(three.free && three.account?.balance.toString()).toBe('300');
  });
});
