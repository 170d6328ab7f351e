/**
 * An account's hot state in Redis: one hash per account (balance, sequence,
 * positions), a lease lock for cross-process serialisation, and the client
 * order ids it has booked. Lua keeps each step atomic; the math stays in
 * TypeScript (Lua numbers are binary floats), so scripts only move strings.
 */
import type { Redis } from 'ioredis';
import { D, type Dec } from '../domain/decimal.js';
import { DependencyUnavailable } from '../domain/errors.js';
import type { Position, Marks } from '../domain/margin.js';
import type { AccountKeys, KeySpace } from './redis.js';
import { defineScript, runScript } from './scripts.js';

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
// '#epoch' counts every change, so readers can cache the marks and re-read
// them only when it moves. Returns the new epoch, or 0 when the post was stale.
const SET_MARK = `
local current = tonumber(redis.call('HGET', KEYS[1], '#' .. ARGV[1]) or '0')
if tonumber(ARGV[3]) > current then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], '#' .. ARGV[1], ARGV[3])
  return redis.call('HINCRBY', KEYS[1], '#epoch', 1)
end
return 0
`;

// KEYS: account state hashes. Many accounts' hashes in one command (the
// margin report reads hundreds per page), each flattened to one string
// (fields and values joined by newlines; none contains one), which is far
// cheaper to send and parse than nested arrays. On a cluster, callers would
// group keys by slot first; here there is one node.
const READ_MANY = `
local out = {}
for i, key in ipairs(KEYS) do out[i] = table.concat(redis.call('HGETALL', key), '\\n') end
return out
`;

const SCRIPTS = {
  readMany: defineScript('readMany', READ_MANY, -1),
  acquire: defineScript('acquire', ACQUIRE, 4),
  apply: defineScript('apply', APPLY, 3),
  release: defineScript('release', RELEASE, 1),
  setMark: defineScript('setMark', SET_MARK, 1),
};

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
  | {
      readonly acquired: true;
      readonly account: StoredAccount;
      readonly clientOrder: string | null;
      readonly marks: Marks;
      /** The marks' change counter when they were read (null: no mark posted yet). */
      readonly marksEpoch: string | null;
    };

/**
 * One round trip: try the lock; if taken, read the account and the client
 * order. The marks come from `marks` (a cache that checks its epoch in the
 * same socket write).
 */
export async function acquireAccount(
  redis: Redis,
  keys: KeySpace,
  marks: MarkBook,
  accountId: number,
  token: string,
  ttlMs: number,
  waiterId: string,
  clientOrderId: string | null,
): Promise<Acquired> {
  const k = keys.account(accountId);
  const [acquired, read] = await Promise.allSettled([
    runScript(redis, SCRIPTS.acquire, [k.lock, k.lockWaiter, k.state, k.clientOrders, token, ttlMs, waiterId, clientOrderId ?? '']),
    marks.snapshot(),
  ]);
  if (acquired.status === 'rejected') throw acquired.reason;
  const [ok, state, order] = acquired.value as [number, string[]?, (string | null)?];
  if (read.status === 'rejected') {
    // The lock may be ours; do not leave it to expire.
    if (ok === 1) await runScript(redis, SCRIPTS.release, [k.lock, token]).catch(() => undefined);
    throw read.reason;
  }
  const current = read.value;
  if (ok !== 1) return { acquired: false };
  return {
    acquired: true,
    account: parseAccount(accountId, state ?? []),
    clientOrder: order ?? null,
    marks: current.marks,
    marksEpoch: current.epoch,
  };
}

/**
 * The marks hash, parsed once per change: a read costs one HGET of its epoch,
 * and the full HGETALL only after a mark moved.
 */
export class MarkBook {
  private epoch: string | null = null;
  private marks: Map<string, Dec> = new Map();

  constructor(
    private readonly redis: Redis,
    private readonly keys: KeySpace,
  ) {}

  async current(): Promise<Marks> {
    return (await this.snapshot()).marks;
  }

  async snapshot(): Promise<{ marks: Marks; epoch: string | null }> {
    const [epoch, boot] = await this.redis.hmget(this.keys.marks, '#epoch', BOOT_FIELD);
    // No boot marker: this Redis lost the engine's state (flushed, or restarted
    // without persistence). Nothing may be read or decided until it is rebuilt.
    if (boot === null) throw new RedisStateLost();
    if (epoch !== null && epoch === this.epoch) return { marks: this.marks, epoch };
    const hash = await this.redis.hgetall(this.keys.marks);
    const marks = parseMarks(hash);
    const read = hash['#epoch'] ?? null;
    this.marks = marks;
    this.epoch = read;
    return { marks, epoch: read };
  }
}

/** The field of the marks hash that says Redis holds a complete state (set last by a rebuild). */
export const BOOT_FIELD = '#boot';

/** Redis answers, but its state is gone until the engine rebuilds it from PostgreSQL. */
export class RedisStateLost extends DependencyUnavailable {
  constructor() {
    super('redis');
    this.message = 'redis lost its state; the engine is rebuilding it from postgresql, retry shortly';
  }
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
/**
 * Commands issued on the auto-pipelined client, their replies collected in
 * order. They leave in the same socket write as every other request's
 * commands of this tick.
 */
export class Commands {
  readonly replies: Promise<unknown>[] = [];
  constructor(private readonly redis: Redis) {}
  private add<T>(p: Promise<T>): void {
    this.replies.push(p);
  }
  zadd(key: string, score: number, member: string): void {
    this.add(this.redis.zadd(key, score, member));
  }
  zrem(key: string, member: string): void {
    this.add(this.redis.zrem(key, member));
  }
  sadd(key: string, member: string): void {
    this.add(this.redis.sadd(key, member));
  }
  srem(key: string, member: string): void {
    this.add(this.redis.srem(key, member));
  }
  incr(key: string): void {
    this.add(this.redis.incr(key));
  }
  hget(key: string, field: string): void {
    this.add(this.redis.hget(key, field));
  }
}

/**
 * Applies a committed ledger row's effect and releases the lock (if `token`);
 * a new account also joins the account set; `extra` adds commands (index
 * updates, counters) to the same write, their replies returned in order.
 * `applied` says whether the state was at `expectedSeq` (false: Redis was
 * behind or ahead; catch-up fixes it).
 */
export async function applyAccount(
  redis: Redis,
  keys: KeySpace,
  token: string,
  update: AccountUpdate,
  isNew: boolean,
  extra?: (c: Commands) => void,
): Promise<{ applied: boolean; extra: unknown[] }> {
  const k: AccountKeys = keys.account(update.accountId);
  // The apply script is guarded by the sequence, so running it again after a reload is harmless.
  const applied = runScript(redis, SCRIPTS.apply, [k.lock, k.state, k.clientOrders, token, ...applyArgs(update)]);
  const commands = new Commands(redis);
  if (isNew) commands.sadd(keys.accounts, String(update.accountId));
  const first = commands.replies.length;
  extra?.(commands);
  const [reply, others] = await Promise.all([applied, Promise.all(commands.replies)]);
  return { applied: reply === 1, extra: others.slice(first) };
}

export async function releaseAccount(redis: Redis, keys: KeySpace, accountId: number, token: string): Promise<void> {
  await runScript(redis, SCRIPTS.release, [keys.account(accountId).lock, token]);
}

/** Several accounts' states in one round trip and one command, without locking. */
export async function readAccounts(redis: Redis, keys: KeySpace, accountIds: readonly number[]): Promise<StoredAccount[]> {
  if (accountIds.length === 0) return [];
  const stateKeys = accountIds.map((id) => keys.account(id).state);
  const replies = (await runScript(redis, SCRIPTS.readMany, [stateKeys.length, ...stateKeys])) as string[];
  return replies.map((joined, i) => parseAccount(accountIds[i]!, joined === '' ? [] : joined.split('\n')));
}

/** The account and all marks, without locking (reads only). */
export async function readAccount(redis: Redis, keys: KeySpace, marks: MarkBook, accountId: number): Promise<{ account: StoredAccount; marks: Marks }> {
  const [state, current] = await Promise.all([redis.hgetall(keys.account(accountId).state), marks.current()]);
  return { account: parseAccount(accountId, state), marks: current };
}

export async function storeMark(redis: Redis, keys: KeySpace, symbol: string, price: string, version: number): Promise<void> {
  await runScript(redis, SCRIPTS.setMark, [keys.marks, symbol, price, version]);
}
