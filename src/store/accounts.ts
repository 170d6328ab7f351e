/**
 * An account's hot state in Redis: one hash per account (balance, sequence,
 * positions), a lease lock for cross-process serialisation, and the client
 * order ids it has booked. Lua keeps each step atomic; the math stays in
 * TypeScript (Lua numbers are binary floats), so scripts only move strings.
 */
import type { ChainableCommander, Redis } from 'ioredis';
import { D, type Dec } from '../domain/decimal.js';
import type { Position, Marks } from '../domain/margin.js';
import type { AccountKeys, KeySpace } from './redis.js';

/** The account as Redis holds it. `seq` is the last ledger row applied (0: never seen). */
export interface StoredAccount {
  readonly accountId: number;
  readonly seq: number;
  readonly balance: Dec;
  readonly positions: ReadonlyMap<string, Position>;
}

export const accountExists = (a: StoredAccount) => a.seq > 0;

// KEYS: lock, lock-waiter, state, client-orders; ARGV: token, ttl ms, waiter id, client order id ('' for none)
// A failed attempt leaves its waiter id behind (briefly), and the next free lock
// goes to that waiter, so two processes hammering one account take turns.
const ACQUIRE = `
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', 200)
  return {0}
end
local waiter = redis.call('GET', KEYS[2])
if waiter and waiter ~= ARGV[3] then return {0} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if waiter then redis.call('DEL', KEYS[2]) end
local order = false
if ARGV[4] ~= '' then order = redis.call('HGET', KEYS[4], ARGV[4]) end
return {1, redis.call('HGETALL', KEYS[3]), order}
`;

// KEYS: lock, state, client-orders
// ARGV: token ('' = no lock to release), expected seq, new seq, balance,
//       n, (symbol, quantity, entry)×n, m, symbol×m, client order id ('' for none), stored result
// Applies only on top of the exact state it was computed from; PostgreSQL already
// holds the row, so a stale apply is skipped and catch-up brings Redis level.
const APPLY = `
local applied = 0
local current = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
local i = 5
if current == tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[2], 'seq', ARGV[3], 'bal', ARGV[4])
  local n = tonumber(ARGV[i]); i = i + 1
  for _ = 1, n do
    redis.call('HSET', KEYS[2], 'q:' .. ARGV[i], ARGV[i + 1], 'e:' .. ARGV[i], ARGV[i + 2]); i = i + 3
  end
  n = tonumber(ARGV[i]); i = i + 1
  for _ = 1, n do
    redis.call('HDEL', KEYS[2], 'q:' .. ARGV[i], 'e:' .. ARGV[i]); i = i + 1
  end
  if ARGV[i] ~= '' then redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
  applied = 1
end
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return applied
`;

// KEYS: lock; ARGV: token
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

// KEYS: marks; ARGV: symbol, price, version. Newer versions only, so Redis ends
// on the same mark as PostgreSQL however two concurrent posts interleave.
const SET_MARK = `
local current = tonumber(redis.call('HGET', KEYS[1], '#' .. ARGV[1]) or '0')
if tonumber(ARGV[3]) > current then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], '#' .. ARGV[1], ARGV[3])
  return 1
end
return 0
`;

interface Scripts<Reply> {
  meAcquire(lock: string, waiter: string, state: string, orders: string, token: string, ttlMs: number, waiterId: string, clientOrderId: string): Reply;
  meApply(lock: string, state: string, orders: string, ...args: (string | number)[]): Reply;
  meRelease(lock: string, token: string): Reply;
  meSetMark(marks: string, symbol: string, price: string, version: number): Reply;
}

/** Registers the scripts on a client (ioredis sends EVALSHA and reloads on NOSCRIPT). */
export function defineScripts(redis: Redis): void {
  redis.defineCommand('meAcquire', { numberOfKeys: 4, lua: ACQUIRE });
  redis.defineCommand('meApply', { numberOfKeys: 3, lua: APPLY });
  redis.defineCommand('meRelease', { numberOfKeys: 1, lua: RELEASE });
  redis.defineCommand('meSetMark', { numberOfKeys: 1, lua: SET_MARK });
}

// defineCommand adds methods ioredis's types cannot know about.
const scripts = (client: Redis) => client as Redis & Scripts<Promise<unknown>>;
const pipelined = (pipeline: ChainableCommander) => pipeline as ChainableCommander & Scripts<ChainableCommander>;

export function parseAccount(accountId: number, flat: string[] | Record<string, string>): StoredAccount {
  const entries: [string, string][] = Array.isArray(flat)
    ? Array.from({ length: flat.length / 2 }, (_, i) => [flat[2 * i]!, flat[2 * i + 1]!])
    : Object.entries(flat);
  let seq = 0;
  let balance = new D(0);
  const quantities = new Map<string, string>();
  const entriesBySymbol = new Map<string, string>();
  for (const [field, value] of entries) {
    if (field === 'seq') seq = Number.parseInt(value, 10);
    else if (field === 'bal') balance = new D(value);
    else if (field.startsWith('q:')) quantities.set(field.slice(2), value);
    else if (field.startsWith('e:')) entriesBySymbol.set(field.slice(2), value);
  }
  const positions = new Map<string, Position>();
  for (const [symbol, quantity] of [...quantities].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const entry = entriesBySymbol.get(symbol);
    if (entry === undefined) throw new Error(`account ${accountId}: position ${symbol} has no entry price`);
    positions.set(symbol, { quantity: new D(quantity), entryPrice: new D(entry) });
  }
  return { accountId, seq, balance, positions };
}

export function parseMarks(hash: Record<string, string>): Map<string, Dec> {
  const marks = new Map<string, Dec>();
  for (const [field, value] of Object.entries(hash)) {
    if (!field.startsWith('#')) marks.set(field, new D(value));
  }
  return marks;
}

export type Acquired =
  | { readonly acquired: false }
  | { readonly acquired: true; readonly account: StoredAccount; readonly clientOrder: string | null; readonly marks: Marks };

/** One round trip: try the lock; if taken, read the account, the client order and all marks. */
export async function acquireAccount(
  redis: Redis,
  keys: KeySpace,
  accountId: number,
  token: string,
  ttlMs: number,
  waiterId: string,
  clientOrderId: string | null,
): Promise<Acquired> {
  const k = keys.account(accountId);
  const results = await pipelined(redis.pipeline())
    .meAcquire(k.lock, k.lockWaiter, k.state, k.clientOrders, token, ttlMs, waiterId, clientOrderId ?? '')
    .hgetall(keys.marks)
    .exec();
  const [acquire, marks] = unwrap(results, 2);
  const reply = acquire as [number, string[]?, (string | null)?];
  if (reply[0] !== 1) return { acquired: false };
  return {
    acquired: true,
    account: parseAccount(accountId, reply[1] ?? []),
    clientOrder: reply[2] ?? null,
    marks: parseMarks(marks as Record<string, string>),
  };
}

export interface AccountUpdate {
  readonly accountId: number;
  readonly expectedSeq: number;
  readonly seq: number;
  readonly balance: string;
  readonly set: readonly { symbol: string; quantity: string; entryPrice: string }[];
  readonly remove: readonly string[];
  readonly clientOrder?: { readonly id: string; readonly stored: string };
}

function applyArgs(update: AccountUpdate): (string | number)[] {
  const args: (string | number)[] = [update.expectedSeq, update.seq, update.balance, update.set.length];
  for (const p of update.set) args.push(p.symbol, p.quantity, p.entryPrice);
  args.push(update.remove.length, ...update.remove);
  args.push(update.clientOrder?.id ?? '', update.clientOrder?.stored ?? '');
  return args;
}

/**
 * Applies a committed ledger row's effect and releases the lock (if `token`),
 * in one round trip; a new account also joins the account set. Returns whether
 * the state was at `expectedSeq` (false: Redis was behind or ahead; catch-up fixes it).
 */
export async function applyAccount(redis: Redis, keys: KeySpace, token: string, update: AccountUpdate, isNew: boolean): Promise<boolean> {
  const k: AccountKeys = keys.account(update.accountId);
  const pipeline = pipelined(redis.pipeline()).meApply(k.lock, k.state, k.clientOrders, token, ...applyArgs(update));
  if (isNew) pipeline.sadd(keys.accounts, String(update.accountId));
  const [applied] = unwrap(await pipeline.exec(), isNew ? 2 : 1);
  return applied === 1;
}

export async function releaseAccount(redis: Redis, keys: KeySpace, accountId: number, token: string): Promise<void> {
  await scripts(redis).meRelease(keys.account(accountId).lock, token);
}

/** The account and all marks, in one round trip, without locking (reads only). */
export async function readAccount(redis: Redis, keys: KeySpace, accountId: number): Promise<{ account: StoredAccount; marks: Marks }> {
  const results = await redis.pipeline().hgetall(keys.account(accountId).state).hgetall(keys.marks).exec();
  const [state, marks] = unwrap(results, 2);
  return { account: parseAccount(accountId, state as Record<string, string>), marks: parseMarks(marks as Record<string, string>) };
}

export async function readMarks(redis: Redis, keys: KeySpace): Promise<Map<string, Dec>> {
  return parseMarks(await redis.hgetall(keys.marks));
}

export async function storeMark(redis: Redis, keys: KeySpace, symbol: string, price: string, version: number): Promise<void> {
  await scripts(redis).meSetMark(keys.marks, symbol, price, version);
}

function unwrap(results: [Error | null, unknown][] | null, expected: number): unknown[] {
  if (!results || results.length !== expected) throw new Error('redis pipeline returned no results');
  return results.map(([error, value]) => {
    if (error) throw error;
    return value;
  });
}
