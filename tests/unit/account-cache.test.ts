import { describe, expect, it } from 'vitest';
import { D } from '../../src/domain/decimal.js';
import { AccountCache } from '../../src/services/account-cache.js';

const account = (accountId: number, seq: number) => ({ accountId, seq, balance: new D(seq), positions: new Map() });

describe('AccountCache', () => {
  it('keeps the latest state per account', () => {
    const cache = new AccountCache(10);
    cache.set(account(1, 1));
    cache.set(account(1, 2));
    expect(cache.get(1)?.seq).toBe(2);
    expect(cache.size).toBe(1);
  });

  it('drops the least recently used account when full (a read counts as a use)', () => {
    const cache = new AccountCache(2);
    cache.set(account(1, 1));
    cache.set(account(2, 1));
    expect(cache.get(1)?.seq).toBe(1); // 2 is now the least recently used
    cache.set(account(3, 1));
    expect(cache.get(2)).toBeUndefined();
    expect(cache.get(1)?.seq).toBe(1);
    expect(cache.get(3)?.seq).toBe(1);
    expect(cache.size).toBe(2);
  });

  it('forgets an account on delete and everything on clear; capacity 0 keeps nothing', () => {
    const cache = new AccountCache(5);
    cache.set(account(1, 1));
    cache.set(account(2, 1));
    cache.delete(1);
    expect(cache.get(1)).toBeUndefined();
    cache.clear();
    expect(cache.size).toBe(0);
    const off = new AccountCache(0);
    off.set(account(1, 1));
    expect(off.get(1)).toBeUndefined();
  });

  it('replaces an account it holds, in place, and does not add one it does not hold', () => {
    const cache = new AccountCache(2);
    cache.set(account(1, 1));
    cache.set(account(2, 1));
    cache.replace(account(1, 2)); // 1 stays the least recently used
    cache.replace(account(3, 1));
    expect(cache.size).toBe(2);
    cache.set(account(4, 1));
    expect(cache.get(1)).toBeUndefined();
    expect(cache.get(2)?.seq).toBe(1);
    expect(cache.get(3)).toBeUndefined();
    cache.replace(account(2, 5));
    expect(cache.get(2)?.seq).toBe(5);
  });
});
