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
import { Batcher } from './batcher.js';
import { defineScript, runScript } from './scripts.js';
import { effectiveMarket, type Market, type MarketParams } from '../domain/markets.js';
import { BucketMap } from './bucket-map.js';
import { isMarkField, MARKS_SINCE, overridesOf, type MarketJson } from './markets.js';

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
// run_ops(t, i, go) reads them from t[i] on (t: ARGV, or an apply item's
// fields), runs them only if `go`, and returns the index just past them.
const RUN_OPS = `
local function run_ops(t, i, go)
  local k = tonumber(t[i]); i = i + 1
  for _ = 1, k do
    if go then
      local op, key, m = t[i], KEYS[tonumber(t[i + 1])], t[i + 3]
      if op == 'za' then redis.call('ZADD', key, t[i + 2], m)
      elseif op == 'zr' then redis.call('ZREM', key, m)
      elseif op == 'sa' then redis.call('SADD', key, m)
      else redis.call('SREM', key, m) end
    end
    i = i + 4
  end
  return i
end
`;

// KEYS: marks, rev, then per item its lock, state and client-orders keys,
//       then every key the items' index operations name (by number)
// ARGV: item count, client-order hash TTL in ms (0: none), then per item one
//       line-separated string (no field holds a newline):
//         token ('' = no lock to release), expected seq, new seq, balance,
//         n, (symbol, quantity, entry)×n, m, symbol×m,
//         index operations (see RUN_OPS),
//         1 if a client order follows, else 0
//       followed, for an item with a client order, by its id and stored result
//       (two arguments of their own: those are the caller's text).
// One string per item rather than ~27 arguments: the client's cost grows
// with the argument count, and the split here is cheap.
// Each item applies only on top of the exact state it was computed from;
// PostgreSQL already holds its rows, so a stale item is skipped (index
// included) and catch-up brings Redis level. Bumps the report revision once
// and returns each item's outcome with the marks' epoch and boot marker, so
// callers learn in the same round trip whether a mark moved.
const APPLY = `${RUN_OPS}
local applied = {}
local ttl = tonumber(ARGV[2])
local a = 3
for item = 1, tonumber(ARGV[1]) do
  local lock, state, orders = KEYS[item * 3], KEYS[item * 3 + 1], KEYS[item * 3 + 2]
  local f, nf = {}, 0
  for field in string.gmatch(ARGV[a] .. '\\n', '([^\\n]*)\\n') do nf = nf + 1; f[nf] = field end
  a = a + 1
  local token = f[1]
  local go = tonumber(redis.call('HGET', state, 'seq') or '0') == tonumber(f[2])
  if go then redis.call('HSET', state, 'seq', f[3], 'bal', f[4]) end
  local i = 6
  for _ = 1, tonumber(f[5]) do
    if go then redis.call('HSET', state, 'q:' .. f[i], f[i + 1], 'e:' .. f[i], f[i + 2]) end
    i = i + 3
  end
  local n = tonumber(f[i]); i = i + 1
  for _ = 1, n do
    if go then redis.call('HDEL', state, 'q:' .. f[i], 'e:' .. f[i]) end
    i = i + 1
  end
  i = run_ops(f, i, go)
  if f[i] == '1' then
    if go then
      redis.call('HSET', orders, ARGV[a], ARGV[a + 1])
      if ttl > 0 then redis.call('PEXPIRE', orders, ttl) end
    end
    a = a + 2
  end
  if token ~= '' and redis.call('GET', lock) == token then redis.call('DEL', lock) end
  applied[item] = go and 1 or 0
end
redis.call('INCR', KEYS[2])
local marks = redis.call('HMGET', KEYS[1], '#epoch', '#boot')
return {applied, marks[1], marks[2]}
`;

// KEYS: state, rev, then the keys the index operations name; ARGV: expected seq, index operations.
// Rewrites index entries only while the account is still at the state they were computed from.
const REINDEX = `${RUN_OPS}
if tonumber(redis.call('HGET', KEYS[1], 'seq') or '0') ~= tonumber(ARGV[1]) then return 0 end
run_ops(ARGV, 2, true)
redis.call('INCR', KEYS[2])
return 1
`;

// KEYS: marks, then per account: state, client-orders, lock, contended
// ARGV: per account: the seq of the caller's cached copy ('' for none), client order id ('' for none)
// The lock-free read of the optimistic path, for many accounts at once: the
// marks' epoch and boot marker, then per account whether it is free (no
// writer holds its lock and none collided on it lately), its seq, its whole
// state only when the caller's copy is not at that seq, and a booked client order.
const PEEK = `
local marks = redis.call('HMGET', KEYS[1], '#epoch', '#boot')
local out = {}
for a = 1, (#KEYS - 1) / 4 do
  local k = 2 + (a - 1) * 4
  if redis.call('EXISTS', KEYS[k + 2], KEYS[k + 3]) > 0 then
    out[a] = {0}
  else
    local seq = redis.call('HGET', KEYS[k], 'seq') or '0'
    local state = false
    if seq ~= ARGV[2 * a - 1] then state = table.concat(redis.call('HGETALL', KEYS[k]), '\\n') end
    local order = false
    if ARGV[2 * a] ~= '' then order = redis.call('HGET', KEYS[k + 1], ARGV[2 * a]) end
    out[a] = {1, seq, state, order}
  end
end
return {marks[1], marks[2], out}
`;

// KEYS: lock; ARGV: token
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
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
  peek: defineScript('peek', PEEK, -1),
  release: defineScript('release', RELEASE, 1),
  marksSince: defineScript('marksSince', MARKS_SINCE, 2),
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

/** The marks in the marks hash (its other fields are versions, markets and markers). */
export function parseMarks(hash: Record<string, string>): Map<string, Dec> {
  const marks = new Map<string, Dec>();
  for (const [field, value] of Object.entries(hash)) {
    if (isMarkField(field)) marks.set(field, new D(value));
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
      readonly markets: ReadonlyMap<string, Market>;
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
    markets: current.markets,
    marksEpoch: current.epoch,
  };
}

/** The marks and markets as one process last read them, at one epoch. */
export interface Book {
  readonly marks: BucketMap<Dec>;
  readonly markets: BucketMap<Market>;
  /** The marks' change counter when they were read (null: nothing posted yet). */
  readonly epoch: string | null;
}

const EMPTY_BOOK: Book = { marks: BucketMap.empty(), markets: BucketMap.empty(), epoch: null };

/**
 * The marks hash (marks and market definitions), cached and parsed once per
 * change: a read costs one HMGET of its epoch, and after a change only the
 * symbols that changed are read again (from the change log), so the cost of
 * a tick does not grow with the number of other markets. A rebuild (a new
 * boot marker) reads everything again.
 */
export class MarkBook {
  private book: Book = EMPTY_BOOK;
  /** The boot marker the cached book was read under: a rebuild writes a new one and restarts the epoch counter. */
  private boot: string | null = null;
  /** When a Redis reply last showed the marks at the book's epoch with the boot marker present (performance.now()). */
  private confirmedAt = Number.NEGATIVE_INFINITY;
  /** The lowest epoch this process knows Redis has reached (raised by its own posts). */
  private floor = 0;
  private loading: { epoch: string | null; read: Promise<Book> } | null = null;

  constructor(
    private readonly redis: Redis,
    private readonly keys: KeySpace,
    /** Every market's parameters where it sets none of its own. */
    private readonly defaults: MarketParams,
  ) {}

  async current(): Promise<Marks> {
    return (await this.snapshot()).marks;
  }

  async snapshot(): Promise<Book> {
    const [epoch, boot] = await this.redis.hmget(this.keys.marks, '#epoch', BOOT_FIELD);
    return this.at(epoch ?? null, boot ?? null);
  }

  /** The book at `epoch`, given the epoch and boot marker just read with some other command. */
  async at(epoch: string | null, boot: string | null): Promise<Book> {
    // No boot marker: this Redis lost the engine's state (flushed, or restarted
    // without persistence). Nothing may be read or decided until it is rebuilt.
    if (boot === null) {
      this.confirmedAt = Number.NEGATIVE_INFINITY;
      throw new RedisStateLost();
    }
    if (boot !== this.boot) {
      // Redis was rebuilt: its epoch counter started again, so an equal epoch
      // proves nothing about the cached book. Read it all again.
      this.boot = boot;
      this.book = EMPTY_BOOK;
      this.floor = 0;
      this.confirmedAt = Number.NEGATIVE_INFINITY;
    }
    if (epoch !== null && epoch === this.book.epoch) {
      this.confirm();
      return this.book;
    }
    // Requests that saw the same new epoch share one re-read.
    if (this.loading && this.loading.epoch === epoch) return this.loading.read;
    const read = this.load();
    this.loading = { epoch, read };
    try {
      return await read;
    } finally {
      if (this.loading?.read === read) this.loading = null;
    }
  }

  private async load(): Promise<Book> {
    const base = this.book;
    if (base.epoch === null) return this.loadAll();
    const [epoch, boot, changed] = (await runScript(this.redis, SCRIPTS.marksSince, [this.keys.marks, this.keys.marklog, base.epoch])) as [
      string | null,
      string | null,
      string[],
    ];
    // Rebuilt meanwhile, or the epoch went backwards: only a full read is safe.
    if (boot !== this.boot || epoch === null || epochNumber(epoch) < epochNumber(base.epoch)) return this.loadAll();
    // Books handed out before stay as they were: the new one shares all but the changed buckets.
    const markChanges: [string, Dec | undefined][] = [];
    const marketChanges: [string, Market | undefined][] = [];
    for (let i = 0; i < changed.length; i += 3) {
      const symbol = changed[i]!;
      const price = changed[i + 1]!;
      const market = changed[i + 2]!;
      markChanges.push([symbol, price === '' ? undefined : new D(price)]);
      marketChanges.push([symbol, market === '' ? undefined : this.parseMarket(symbol, market)]);
    }
    return this.settle({ marks: base.marks.with(markChanges), markets: base.markets.with(marketChanges), epoch });
  }

  private async loadAll(): Promise<Book> {
    const hash = await this.redis.hgetall(this.keys.marks);
    const markets: [string, Market][] = [];
    for (const [field, value] of Object.entries(hash)) {
      if (field.charCodeAt(0) === 36 /* $ */) markets.push([field.slice(1), this.parseMarket(field.slice(1), value)]);
    }
    this.boot = hash[BOOT_FIELD] ?? null;
    return this.settle({ marks: BucketMap.from(parseMarks(hash)), markets: BucketMap.from(markets), epoch: hash['#epoch'] ?? null });
  }

  private settle(book: Book): Book {
    this.book = book;
    this.confirm();
    return book;
  }

  private parseMarket(symbol: string, json: string): Market {
    const m = JSON.parse(json) as MarketJson;
    return effectiveMarket(symbol, m.status, overridesOf(m.params), this.defaults);
  }

  /**
   * The cached book, if a Redis reply confirmed it within `maxAgeMs` and
   * nothing since says it moved; null otherwise (read it with the account).
   */
  trusted(maxAgeMs: number): Book | null {
    if (this.loading !== null || performance.now() - this.confirmedAt > maxAgeMs) return null;
    return this.book;
  }

  /** Another command's reply read the marks' epoch and boot marker: it confirms the cached book or withdraws the trust in it. */
  observe(epoch: string | null, boot: string | null): void {
    if (boot !== null && boot === this.boot && epoch === this.book.epoch) this.confirm();
    else this.confirmedAt = Number.NEGATIVE_INFINITY;
  }

  /** This process moved a mark or market to `epoch`: until the cache is re-read at or past it, nothing trusts the cache. */
  moved(epoch: number): void {
    if (epoch > this.floor) this.floor = epoch;
    this.confirmedAt = Number.NEGATIVE_INFINITY;
  }

  /** Something this process posted may or may not have reached Redis: trust nothing cached until Redis is read again. */
  distrust(): void {
    this.confirmedAt = Number.NEGATIVE_INFINITY;
  }

  private confirm(): void {
    // A reply sent before this process's own newer post still shows the old epoch: it confirms nothing.
    this.confirmedAt = epochNumber(this.book.epoch) >= this.floor ? performance.now() : Number.NEGATIVE_INFINITY;
  }
}

/** The marks' change counter as a number (null: no mark posted yet). Not money. */
function epochNumber(epoch: string | null): number {
  return epoch === null ? 0 : Number.parseInt(epoch, 10);
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

/** An item's fields for the apply script, one per line (see APPLY). */
function packApply(token: string, update: AccountUpdate, table: KeyTable, ops: IndexOps): string {
  let s = `${token}\n${update.expectedSeq}\n${update.seq}\n${update.balance}\n${update.set.length}`;
  for (const p of update.set) s += `\n${p.symbol}\n${p.quantity}\n${p.entryPrice}`;
  s += `\n${update.remove.length}`;
  for (const symbol of update.remove) s += `\n${symbol}`;
  s += `\n${ops.ops.length}`;
  for (const [op, key, score, member] of ops.ops) s += `\n${op}\n${table.ref(key)}\n${score}\n${member}`;
  return s + (update.clientOrder ? '\n1' : '\n0');
}

/** Index operations to run inside an apply or reindex script (op, key, score, member). */
export class IndexOps implements IndexWriter {
  readonly ops: [op: string, key: string, score: number | string, member: string][] = [];

  zadd(key: string, score: number, member: string): void {
    this.ops.push(['za', key, score, member]);
  }
  zrem(key: string, member: string): void {
    this.ops.push(['zr', key, '', member]);
  }
  sadd(key: string, member: string): void {
    this.ops.push(['sa', key, '', member]);
  }
  srem(key: string, member: string): void {
    this.ops.push(['sr', key, '', member]);
  }
}

/** A script's KEYS, each named once, referred to by number. */
class KeyTable {
  readonly keys: string[] = [];
  private readonly numbers = new Map<string, number>();

  constructor(private readonly first: number) {}

  ref(key: string): number {
    let n = this.numbers.get(key);
    if (n === undefined) {
      n = this.first + this.keys.length;
      this.keys.push(key);
      this.numbers.set(key, n);
    }
    return n;
  }
}

function pushOps(args: (string | number)[], table: KeyTable, ops: IndexOps): void {
  args.push(ops.ops.length);
  for (const [op, key, score, member] of ops.ops) args.push(op, table.ref(key), score, member);
}

export interface Applied {
  /** The state was at `expectedSeq` and now holds the update (false: Redis was behind or ahead; catch-up fixes it). */
  readonly applied: boolean;
  /** The marks' epoch after the apply. */
  readonly marksEpoch: string | null;
  /** The boot marker (null: gone, Redis lost its state meanwhile). */
  readonly boot: string | null;
}

interface ApplyItem {
  readonly keys: AccountKeys;
  readonly token: string;
  readonly update: AccountUpdate;
  readonly ops: IndexOps;
}

async function applyMany(redis: Redis, keys: KeySpace, items: readonly ApplyItem[]): Promise<Applied[]> {
  const accountKeys: string[] = [];
  // The index keys are few and shared by many items: each is named once, after the accounts' keys.
  const table = new KeyTable(3 + 3 * items.length);
  const args: (string | number)[] = [items.length, keys.clientOrderTtlMs];
  for (const { keys: k, token, update, ops } of items) {
    accountKeys.push(k.lock, k.state, k.clientOrders);
    args.push(packApply(token, update, table, ops));
    if (update.clientOrder) args.push(update.clientOrder.id, update.clientOrder.stored);
  }
  const [applied, epoch, boot] = (await runScript(redis, SCRIPTS.apply, [2 + accountKeys.length + table.keys.length, keys.marks, keys.rev, ...accountKeys, ...table.keys, ...args])) as [
    number[],
    string | null,
    string | null,
  ];
  return applied.map((a) => ({ applied: a === 1, marksEpoch: epoch ?? null, boot: boot ?? null }));
}

interface PeekItem {
  readonly keys: AccountKeys;
  readonly cachedSeq: number | null;
  readonly clientOrderId: string | null;
}

type PeekEntry = [free: number, seq?: string, state?: string | null, order?: string | null];

interface PeekReply {
  readonly epoch: string | null;
  readonly boot: string | null;
  readonly entry: PeekEntry;
}

async function peekMany(redis: Redis, keys: KeySpace, items: readonly PeekItem[]): Promise<PeekReply[]> {
  const keyArgs: string[] = [keys.marks];
  const args: (string | number)[] = [];
  for (const { keys: k, cachedSeq, clientOrderId } of items) {
    keyArgs.push(k.state, k.clientOrders, k.lock, k.contended);
    args.push(cachedSeq ?? '', clientOrderId ?? '');
  }
  const [epoch, boot, entries] = (await runScript(redis, SCRIPTS.peek, [keyArgs.length, ...keyArgs, ...args])) as [
    string | null,
    string | null,
    PeekEntry[],
  ];
  return entries.map((entry) => ({ epoch: epoch ?? null, boot: boot ?? null, entry }));
}

/**
 * The batchers of one client and key space: concurrent requests' peeks and
 * applies each share one script call per round trip.
 */
interface Batchers {
  readonly peek: Batcher<PeekItem, PeekReply>;
  readonly apply: Batcher<ApplyItem, Applied>;
}
const batchersByClient = new WeakMap<Redis, Map<string, Batchers>>();

function batchersFor(redis: Redis, keys: KeySpace): Batchers {
  let byPrefix = batchersByClient.get(redis);
  if (!byPrefix) batchersByClient.set(redis, (byPrefix = new Map()));
  let b = byPrefix.get(keys.prefix);
  if (!b) {
    b = { peek: new Batcher((items) => peekMany(redis, keys, items)), apply: new Batcher((items) => applyMany(redis, keys, items)) };
    byPrefix.set(keys.prefix, b);
  }
  return b;
}

/**
 * Applies a committed ledger row's effect on top of `expectedSeq`, with the
 * index operations `index` queues (a new account also joins the account
 * set); releases the lock (if `token`); bumps the report revision; reads the
 * marks' epoch. Concurrent calls share one script call.
 */
export async function applyAccount(
  redis: Redis,
  keys: KeySpace,
  token: string,
  update: AccountUpdate,
  isNew: boolean,
  index?: (w: IndexWriter) => void,
): Promise<Applied> {
  const ops = new IndexOps();
  if (isNew) ops.sadd(keys.accounts, String(update.accountId));
  index?.(ops);
  return batchersFor(redis, keys).apply.call({ keys: keys.account(update.accountId), token, update, ops });
}

/**
 * Writes index entries computed from the account at `seq`, only if it is
 * still at `seq` (a newer state's writer indexed it itself). Returns whether it did.
 */
export async function reindexAt(redis: Redis, keys: KeySpace, accountId: number, seq: number, index: (w: IndexWriter) => void): Promise<boolean> {
  const ops = new IndexOps();
  index(ops);
  const table = new KeyTable(3);
  const args: (string | number)[] = [seq];
  pushOps(args, table, ops);
  const reply = await runScript(redis, SCRIPTS.reindex, [2 + table.keys.length, keys.account(accountId).state, keys.rev, ...table.keys, ...args]);
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
      readonly markets: ReadonlyMap<string, Market>;
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
  const { epoch, boot, entry } = await batchersFor(redis, keys).peek.call({ keys: keys.account(accountId), cachedSeq, clientOrderId });
  const book = await marks.at(epoch, boot);
  if (entry[0] !== 1) return { free: false };
  const state = entry[2] ?? null;
  return {
    free: true,
    seq: Number.parseInt(entry[1]!, 10),
    account: state === null ? null : parseAccount(accountId, state === '' ? [] : state.split('\n')),
    clientOrder: entry[3] ?? null,
    marks: book.marks,
    markets: book.markets,
    marksEpoch: book.epoch,
  };
}

/** Records a booked client order's stored result, unless Redis already has one for that id. */
export async function rememberClientOrder(redis: Redis, keys: KeySpace, accountId: number, clientOrderId: string, stored: string): Promise<void> {
  const hash = keys.account(accountId).clientOrders;
  // Both in one round trip (a pipeline keeps their order).
  const pipeline = redis.pipeline().hsetnx(hash, clientOrderId, stored);
  if (keys.clientOrderTtlMs > 0) pipeline.pexpire(hash, keys.clientOrderTtlMs);
  for (const [error] of (await pipeline.exec()) ?? []) if (error) throw error;
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
