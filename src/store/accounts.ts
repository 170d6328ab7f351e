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
import type { IndexWriter } from './risk-index.js';
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

// The index operations an apply or reindex carries: k, then (op, key number,
// score, member)×k; op is za/zr/sa/sr (ZADD/ZREM/SADD/SREM), the key is KEYS[key number].
const RUN_OPS = `
local function run_ops(i)
  local k = tonumber(ARGV[i]); i = i + 1
  for _ = 1, k do
    local op, key, m = ARGV[i], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 3]
    if op == 'za' then redis.call('ZADD', key, ARGV[i + 2], m)
    elseif op == 'zr' then redis.call('ZREM', key, m)
    elseif op == 'sa' then redis.call('SADD', key, m)
    else redis.call('SREM', key, m) end
    i = i + 4
  end
end
`;

// KEYS: lock, state, client-orders, marks, rev, then the keys the index operations name
// ARGV: token ('' = no lock to release), expected seq, new seq, balance,
//       n, (symbol, quantity, entry)×n, m, symbol×m, client order id ('' for none), stored result,
//       index operations (see RUN_OPS)
// Applies only on top of the exact state it was computed from; PostgreSQL already
// holds the row, so a stale apply is skipped (index included) and catch-up brings
// Redis level. Bumps the report revision and returns the marks' epoch and boot
// marker, so the caller learns in the same round trip whether a mark moved.
const APPLY = `${RUN_OPS}
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
  run_ops(i + 2)
  applied = 1
end
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('INCR', KEYS[5])
local marks = redis.call('HMGET', KEYS[4], '#epoch', '#boot')
return {applied, marks[1], marks[2]}
`;

// KEYS: state, rev, then the keys the index operations name; ARGV: expected seq, index operations.
// Rewrites index entries only while the account is still at the state they were computed from.
const REINDEX = `${RUN_OPS}
if tonumber(redis.call('HGET', KEYS[1], 'seq') or '0') ~= tonumber(ARGV[1]) then return 0 end
run_ops(2)
redis.call('INCR', KEYS[2])
return 1
`;

// KEYS: state, client-orders, lock, marks, contended; ARGV: the seq of the caller's cached copy ('' for none), client order id ('' for none)
// The lock-free read of the optimistic path: the marks' epoch and boot marker,
// whether another writer holds the lock (or writers collided on it lately), the account's seq, its whole state
// only when the caller's copy is not at that seq, and a booked client order.
const PEEK = `
local marks = redis.call('HMGET', KEYS[4], '#epoch', '#boot')
if redis.call('EXISTS', KEYS[3], KEYS[5]) > 0 then return {0, marks[1], marks[2]} end
local seq = redis.call('HGET', KEYS[1], 'seq') or '0'
local state = false
if seq ~= ARGV[1] then state = table.concat(redis.call('HGETALL', KEYS[1]), '\\n') end
local order = false
if ARGV[2] ~= '' then order = redis.call('HGET', KEYS[2], ARGV[2]) end
return {1, marks[1], marks[2], seq, state, order}
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
  apply: defineScript('apply', APPLY, -1),
  reindex: defineScript('reindex', REINDEX, -1),
  peek: defineScript('peek', PEEK, 5),
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
    return this.at(epoch ?? null, boot ?? null);
  }

  /** The marks at `epoch`, given the epoch and boot marker just read with some other command. */
  async at(epoch: string | null, boot: string | null): Promise<{ marks: Marks; epoch: string | null }> {
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
 * Index operations to run inside an apply or reindex script, with the keys
 * they name collected for the script's KEYS.
 */
export class IndexOps implements IndexWriter {
  readonly keys: string[] = [];
  readonly args: (string | number)[] = [0];
  private readonly slots = new Map<string, number>();

  constructor(private readonly firstKey: number) {}

  private add(op: string, key: string, score: number | string, member: string): void {
    let slot = this.slots.get(key);
    if (slot === undefined) {
      slot = this.firstKey + this.keys.length;
      this.keys.push(key);
      this.slots.set(key, slot);
    }
    this.args.push(op, slot, score, member);
    this.args[0] = (this.args[0] as number) + 1;
  }
  zadd(key: string, score: number, member: string): void {
    this.add('za', key, score, member);
  }
  zrem(key: string, member: string): void {
    this.add('zr', key, '', member);
  }
  sadd(key: string, member: string): void {
    this.add('sa', key, '', member);
  }
  srem(key: string, member: string): void {
    this.add('sr', key, '', member);
  }
}

export interface Applied {
  /** The state was at `expectedSeq` and now holds the update (false: Redis was behind or ahead; catch-up fixes it). */
  readonly applied: boolean;
  /** The marks' epoch after the apply. */
  readonly marksEpoch: string | null;
  /** The boot marker is still there (false: Redis lost its state meanwhile). */
  readonly booted: boolean;
}

/**
 * One command: applies a committed ledger row's effect on top of
 * `expectedSeq`, with the index operations `index` queues (a new account
 * also joins the account set); releases the lock (if `token`); bumps the
 * report revision; reads the marks' epoch.
 */
export async function applyAccount(
  redis: Redis,
  keys: KeySpace,
  token: string,
  update: AccountUpdate,
  isNew: boolean,
  index?: (w: IndexWriter) => void,
): Promise<Applied> {
  const k: AccountKeys = keys.account(update.accountId);
  const ops = new IndexOps(6);
  if (isNew) ops.sadd(keys.accounts, String(update.accountId));
  index?.(ops);
  const reply = (await runScript(redis, SCRIPTS.apply, [
    5 + ops.keys.length,
    k.lock,
    k.state,
    k.clientOrders,
    keys.marks,
    keys.rev,
    ...ops.keys,
    token,
    ...applyArgs(update),
    ...ops.args,
  ])) as [number, string | null, string | null];
  return { applied: reply[0] === 1, marksEpoch: reply[1] ?? null, booted: reply[2] !== null && reply[2] !== undefined };
}

/**
 * Writes index entries computed from the account at `seq`, only if it is
 * still at `seq` (a newer state's writer indexed it itself). Returns whether it did.
 */
export async function reindexAt(redis: Redis, keys: KeySpace, accountId: number, seq: number, index: (w: IndexWriter) => void): Promise<boolean> {
  const ops = new IndexOps(3);
  index(ops);
  const reply = await runScript(redis, SCRIPTS.reindex, [2 + ops.keys.length, keys.account(accountId).state, keys.rev, ...ops.keys, seq, ...ops.args]);
  return reply === 1;
}

export type Peeked =
  /** Another writer holds the account's lock: queue for it. */
  | { readonly free: false }
  | {
      readonly free: true;
      readonly seq: number;
      /** The account's state, or null when it is at the caller's cached seq. */
      readonly account: StoredAccount | null;
      readonly clientOrder: string | null;
      readonly marks: Marks;
      readonly marksEpoch: string | null;
    };

/**
 * One command, no lock: the account's seq (its state only when `cachedSeq`
 * is stale), a booked client order, and the marks (from `marks`, re-read
 * only when their epoch moved). Throws RedisStateLost when the boot marker is gone.
 */
export async function peekAccount(
  redis: Redis,
  keys: KeySpace,
  marks: MarkBook,
  accountId: number,
  cachedSeq: number | null,
  clientOrderId: string | null,
): Promise<Peeked> {
  const k = keys.account(accountId);
  const reply = (await runScript(redis, SCRIPTS.peek, [k.state, k.clientOrders, k.lock, keys.marks, k.contended, cachedSeq ?? '', clientOrderId ?? ''])) as [
    number,
    string | null,
    string | null,
    string?,
    (string | null)?,
    (string | null)?,
  ];
  const book = await marks.at(reply[1] ?? null, reply[2] ?? null);
  if (reply[0] !== 1) return { free: false };
  const seq = Number.parseInt(reply[3]!, 10);
  const state = reply[4] ?? null;
  return {
    free: true,
    seq,
    account: state === null ? null : parseAccount(accountId, state === '' ? [] : state.split('\n')),
    clientOrder: reply[5] ?? null,
    marks: book.marks,
    marksEpoch: book.epoch,
  };
}

/** After a collision: for `ms`, writers of this account take its lock instead of the optimistic path. */
export async function markContended(redis: Redis, keys: KeySpace, accountId: number, ms: number): Promise<void> {
  await redis.set(keys.account(accountId).contended, '1', 'PX', ms);
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
