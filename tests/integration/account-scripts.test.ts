/**
 * The account scripts against real Redis: concurrent peeks and applies share
 * one script call, and each item in it is judged on its own (a stale item
 * is skipped without touching the others).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { applyAccount, peekAccount, type AccountUpdate } from '../../src/store/account-state.js';
import { BOOT_FIELD, EPOCH_FIELD } from '../../src/store/marks-hash.js';
import { D } from '../../src/domain/decimal.js';
import { MarkBook } from '../../src/store/mark-book.js';
import { publishMarket } from '../../src/store/markets.js';
import { KeySpace } from '../../src/store/redis.js';
import { member, RiskKeys } from '../../src/store/risk-index.js';
import { defaultMarketParams, loadConfig } from '../../src/config.js';
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

describe('index shards on one node', () => {
  const tick = (keys: KeySpace, price: string, version: number) => publishMarket(db.redis, keys, 'BTC-PERP', { price, version }, null, new D(price));

  it('publishes a mark to every shard\'s copy and finds the endangered holders of every shard in the same calls', async () => {
    const { redis } = db;
    const sharded = new KeySpace(`${iso.prefix}:${++tests}`, 0, 4);
    const risk = new RiskKeys(sharded);
    await Promise.all(sharded.shards.map((k) => redis.hset(k.marks, BOOT_FIELD, 'b')));
    // Longs 1-4 (one per shard) liquidatable above 45000, and 5 (shard 1) above 40000.
    const thresholds: [number, number][] = [[1, 45000], [2, 45000], [3, 45000], [4, 45000], [5, 40000]];
    await Promise.all(thresholds.map(([id, t]) => applyAccount(redis, sharded, { update: update(id, 0, '1'), isNew: true, index: (w) => w.zadd(risk.of(id).long('BTC-PERP'), -t, member(id)) })));
    const published = await tick(sharded, '44000', 1);
    expect(published.epochs).toEqual([1, 1, 1, 1]);
    expect(published.endangered.sort()).toEqual([1, 2, 3, 4]);
    for (const k of sharded.shards) expect(await redis.hget(k.marks, 'BTC-PERP')).toBe('44000');
    expect((await Promise.all(sharded.shards.map((k) => redis.scard(k.accounts)))).reduce((a, b) => a + b)).toBe(5);
    // An apply reads its own shard's epoch and boot marker.
    const applied = await applyAccount(redis, sharded, { update: update(2, 1, '2') });
    expect(applied).toMatchObject({ applied: true, marksEpoch: '1', boot: 'b' });
    // The same version again changes no shard, and still reads the endangered holders.
    expect(await tick(sharded, '44000', 1)).toMatchObject({ epochs: [0, 0, 0, 0] });
    // Two publishes racing in either order leave every shard on the newer version.
    await Promise.all([tick(sharded, '39000', 3), tick(sharded, '41000', 2)]);
    for (const k of sharded.shards) expect(await redis.hmget(k.marks, 'BTC-PERP', '#BTC-PERP')).toEqual(['39000', '3']);
  });

  it('caches each shard\'s copy of the marks on its own: a shard whose epoch differs is read at its own epoch', async () => {
    const { redis } = db;
    const sharded = new KeySpace(`${iso.prefix}:${++tests}`, 0, 2);
    await Promise.all(sharded.shards.map((k) => redis.hset(k.marks, BOOT_FIELD, 'b')));
    // Shard 1 has seen one more change than shard 0 (a publish that lost a race on shard 0 is not counted there).
    await tick(sharded, '100', 1);
    await redis.hincrby(sharded.shards[1]!.marks, EPOCH_FIELD, 5);
    const book = new MarkBook(redis, sharded, defaultMarketParams(loadConfig({})));
    const zero = await book.snapshot(0);
    const one = await book.snapshot(1);
    expect([zero.epoch, one.epoch]).toEqual(['1', '6']);
    expect([zero.marks.get('BTC-PERP')?.toString(), one.marks.get('BTC-PERP')?.toString()]).toEqual(['100', '100']);
    expect(book.trusted(60_000, 0)).not.toBeNull();
    expect(book.trusted(60_000, 1)).not.toBeNull();
    // A reply from shard 0 showing another epoch withdraws the trust in shard 0's book only.
    book.observe('2', 'b', 0);
    expect(book.trusted(60_000, 0)).toBeNull();
    expect(book.trusted(60_000, 1)).not.toBeNull();
    // This process's own post raises each shard's floor by that shard's epoch.
    book.moved([2, 7]);
    expect(book.trusted(60_000, 1)).toBeNull();
    book.observe('6', 'b', 1); // a reply sent before the post: it confirms nothing
    expect(book.trusted(60_000, 1)).toBeNull();
  });
});
