/**
 * An account's hot state: one hash per account (`state` under the account's
 * hash tag: `seq`, `bal`, and `q:<symbol>` / `e:<symbol>` per position).
 * `seq` is the last ledger row applied, so every write names the state it was
 * computed from and a stale one is refused.
 *
 * Writes (apply, reindex) carry the account's risk-index moves in the same
 * script, so the index never disagrees with the state it was computed from.
 * Concurrent requests' peeks and applies share one script call per round
 * trip (Batcher).
 */
import { D, type Dec } from '../domain/decimal.js';
import type { Position } from '../domain/margin.js';
import { Batcher } from './batcher.js';
import type { AccountKeys, KeySpace, RedisClient, ShardKeys } from './redis.js';
import type { IndexWriter } from './risk-index.js';
import { runScript, SCRIPTS } from './scripts.js';

/** The account as Redis holds it. `seq` is the last ledger row applied (0: never seen). */
export interface StoredAccount {
  readonly accountId: number;
  readonly seq: number;
  readonly balance: Dec;
  readonly positions: ReadonlyMap<string, Position>;
}

export const accountExists = (a: StoredAccount) => a.seq > 0;

/** An account's state from its hash (HGETALL's object, or its flat field/value list). */
export function parseAccount(accountId: number, flat: string[] | Record<string, string>): StoredAccount {
  // One pass over the fields, no pair arrays: the peek and the report parse thousands of these per call.
  const fields = Array.isArray(flat) ? flat : Object.entries(flat).flat();
  let seq = 0;
  let balance: Dec | null = null;
  const quantities: [symbol: string, quantity: string][] = [];
  const entriesBySymbol = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const field = fields[i]!;
    const value = fields[i + 1]!;
    if (field === 'seq') seq = Number.parseInt(value, 10);
    else if (field === 'bal') balance = new D(value);
    else if (field.startsWith('q:')) quantities.push([field.slice(2), value]);
    else if (field.startsWith('e:')) entriesBySymbol.set(field.slice(2), value);
  }
  if (quantities.length > 1) quantities.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const positions = new Map<string, Position>();
  for (const [symbol, quantity] of quantities) {
    const entry = entriesBySymbol.get(symbol);
    if (entry === undefined) throw new Error(`account ${accountId}: position ${symbol} has no entry price`);
    positions.set(symbol, { quantity: new D(quantity), entryPrice: new D(entry) });
  }
  return { accountId, seq, balance: balance ?? new D(0), positions };
}

/** A state hash flattened by a script (fields and values joined by newlines). */
const parseJoined = (accountId: number, joined: string) => parseAccount(accountId, joined === '' ? [] : joined.split('\n'));

/** One account's state, without locking (reads only). */
export async function readAccount(redis: RedisClient, keys: KeySpace, accountId: number): Promise<StoredAccount> {
  return parseAccount(accountId, await redis.hgetall(keys.account(accountId).state));
}

/** Several accounts' states in one round trip, without locking: one command per shard they belong to, in parallel. */
export async function readAccounts(redis: RedisClient, keys: KeySpace, accountIds: readonly number[]): Promise<StoredAccount[]> {
  if (accountIds.length === 0) return [];
  const read = async (ids: readonly number[]) => {
    const stateKeys = ids.map((id) => keys.account(id).state);
    const replies = (await runScript(redis, SCRIPTS.accountReadMany, [stateKeys.length, ...stateKeys])) as string[];
    return replies.map((joined, i) => parseJoined(ids[i]!, joined));
  };
  if (keys.shards.length === 1) return read(accountIds);
  const groups = [...keys.groupByShard(accountIds, (id) => id).values()];
  const byId = new Map<number, StoredAccount>();
  for (const accounts of await Promise.all(groups.map(read))) for (const a of accounts) byId.set(a.accountId, a);
  return accountIds.map((id) => byId.get(id)!);
}

/** What a committed ledger row (or rows) does to the account's hash, on top of `expectedSeq`. Values are the rows' decimal text. */
export interface AccountUpdate {
  readonly accountId: number;
  readonly expectedSeq: number;
  readonly seq: number;
  readonly balance: string;
  readonly set: readonly { symbol: string; quantity: string; entryPrice: string }[];
  readonly remove: readonly string[];
  readonly clientOrder?: { readonly id: string; readonly stored: string };
}

/** Index operations to run inside an apply or reindex script (op, key, score, member); see lua/index-ops.lua. */
class IndexOps implements IndexWriter {
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

/** An apply item's fields, one per line (see lua/account-apply.lua). */
function packApply(token: string, update: AccountUpdate, table: KeyTable, ops: IndexOps): string {
  let s = `${token}\n${update.expectedSeq}\n${update.seq}\n${update.balance}\n${update.set.length}`;
  for (const p of update.set) s += `\n${p.symbol}\n${p.quantity}\n${p.entryPrice}`;
  s += `\n${update.remove.length}`;
  for (const symbol of update.remove) s += `\n${symbol}`;
  s += `\n${ops.ops.length}`;
  for (const [op, key, score, member] of ops.ops) s += `\n${op}\n${table.ref(key)}\n${score}\n${member}`;
  return s + (update.clientOrder ? '\n1' : '\n0');
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

/** One shard's applies in one script call (every key in the shard's slot). */
async function applyMany(redis: RedisClient, keys: KeySpace, shard: ShardKeys, items: readonly ApplyItem[]): Promise<Applied[]> {
  const accountKeys: string[] = [];
  // The index keys are few and shared by many items: each is named once, after the accounts' keys.
  const table = new KeyTable(3 + 3 * items.length);
  const args: (string | number)[] = [items.length, keys.clientOrderTtlMs];
  for (const { keys: k, token, update, ops } of items) {
    accountKeys.push(k.lock, k.state, k.clientOrders);
    args.push(packApply(token, update, table, ops));
    if (update.clientOrder) args.push(update.clientOrder.id, update.clientOrder.stored);
  }
  const keyCount = 2 + accountKeys.length + table.keys.length;
  const [applied, epoch, boot] = (await runScript(redis, SCRIPTS.accountApply, [keyCount, shard.marks, shard.rev, ...accountKeys, ...table.keys, ...args])) as [
    number[],
    string | null,
    string | null,
  ];
  return applied.map((a) => ({ applied: a === 1, marksEpoch: epoch ?? null, boot: boot ?? null }));
}

export interface PeekItem {
  readonly accountId: number;
  readonly cachedSeq: number | null;
  readonly clientOrderId: string | null;
}

export type Peeked = {
  /** The marks' epoch and boot marker, read in the same command. */
  readonly marksEpoch: string | null;
  readonly boot: string | null;
} & (
  | /** Another writer holds the account's lock (or writers collided on it lately): queue for it. */ { readonly free: false }
  | {
      readonly free: true;
      readonly seq: number;
      /** The account's state, or null when it is at the caller's cached seq. */
      readonly account: StoredAccount | null;
      /** The stored result of the client order id asked about, if booked. */
      readonly clientOrder: string | null;
    }
);

type PeekEntry = [free: number, seq?: string, state?: string | null, order?: string | null];

/** One shard's peeks in one script call. */
async function peekMany(redis: RedisClient, keys: KeySpace, shard: ShardKeys, items: readonly PeekItem[]): Promise<Peeked[]> {
  const keyArgs: string[] = [shard.marks];
  const args: (string | number)[] = [];
  for (const { accountId, cachedSeq, clientOrderId } of items) {
    const k = keys.account(accountId);
    keyArgs.push(k.state, k.clientOrders, k.lock, k.contended);
    args.push(cachedSeq ?? '', clientOrderId ?? '');
  }
  const [epoch, boot, entries] = (await runScript(redis, SCRIPTS.accountPeek, [keyArgs.length, ...keyArgs, ...args])) as [
    string | null,
    string | null,
    PeekEntry[],
  ];
  const head = { marksEpoch: epoch ?? null, boot: boot ?? null };
  return entries.map(([free, seq, state, order], i): Peeked => {
    if (free !== 1) return { ...head, free: false };
    return {
      ...head,
      free: true,
      seq: Number.parseInt(seq!, 10),
      account: state === null || state === undefined ? null : parseJoined(items[i]!.accountId, state),
      clientOrder: order ?? null,
    };
  });
}

/**
 * The batchers of one client, key space and shard: concurrent requests'
 * peeks and applies on one shard each share one script call per round trip;
 * the shards' calls go out independently, in parallel (with one shard, this
 * is one call per round trip for everything).
 */
interface Batchers {
  readonly peek: Batcher<PeekItem, Peeked>;
  readonly apply: Batcher<ApplyItem, Applied>;
}
const batchersByClient = new WeakMap<RedisClient, Map<string, Batchers[]>>();

function batchersFor(redis: RedisClient, keys: KeySpace, accountId: number): Batchers {
  let byPrefix = batchersByClient.get(redis);
  if (!byPrefix) batchersByClient.set(redis, (byPrefix = new Map()));
  const name = `${keys.prefix}/${keys.shards.length}`;
  let b = byPrefix.get(name);
  if (!b) {
    b = keys.shards.map((shard) => ({
      peek: new Batcher<PeekItem, Peeked>((items) => peekMany(redis, keys, shard, items)),
      apply: new Batcher<ApplyItem, Applied>((items) => applyMany(redis, keys, shard, items)),
    }));
    byPrefix.set(name, b);
  }
  return b[keys.shardOf(accountId)]!;
}

export interface ApplyRequest {
  readonly update: AccountUpdate;
  /** The lock to release with the apply ('' for none). */
  readonly token?: string;
  /** The account is new: it joins the account set. */
  readonly isNew?: boolean;
  /** Queues the account's risk-index moves. */
  readonly index?: (w: IndexWriter) => void;
}

/**
 * Applies committed ledger rows' effect on top of `update.expectedSeq`, with
 * the index operations `index` queues; releases the lock (if `token`); bumps
 * the report revision; reads the marks' epoch. Concurrent calls share one
 * script call.
 */
export async function applyAccount(redis: RedisClient, keys: KeySpace, { update, token = '', isNew = false, index }: ApplyRequest): Promise<Applied> {
  const ops = new IndexOps();
  if (isNew) ops.sadd(keys.shardFor(update.accountId).accounts, String(update.accountId));
  index?.(ops);
  return batchersFor(redis, keys, update.accountId).apply.call({ keys: keys.account(update.accountId), token, update, ops });
}

/**
 * Applies many accounts' committed rows in one script call per shard, each as
 * `applyAccount` applies one (on top of its `expectedSeq` only, with its
 * index moves); for bulk writes, which batch themselves (`applyAccount`'s
 * callers share calls through a Batcher). One outcome per request, in order.
 */
export async function applyAccounts(redis: RedisClient, keys: KeySpace, requests: readonly ApplyRequest[]): Promise<Applied[]> {
  const out: Applied[] = new Array<Applied>(requests.length);
  const groups = keys.groupByShard(
    requests.map((r, i) => ({ r, i })),
    ({ r }) => r.update.accountId,
  );
  // One script call per shard, in parallel (a call may touch one slot only).
  await Promise.all(
    [...groups].map(async ([k, group]) => {
      const shard = keys.shards[k]!;
      const items = group.map(({ r: { update, token = '', isNew = false, index } }): ApplyItem => {
        const ops = new IndexOps();
        if (isNew) ops.sadd(shard.accounts, String(update.accountId));
        index?.(ops);
        return { keys: keys.account(update.accountId), token, update, ops };
      });
      const results = await applyMany(redis, keys, shard, items);
      group.forEach(({ i }, j) => (out[i] = results[j]!));
    }),
  );
  return out;
}

/**
 * Many accounts' lock-free reads in one script call per shard, as `peekAccount` reads
 * one; for bulk work, which batches itself. One answer per item, in order.
 */
export async function peekAccounts(redis: RedisClient, keys: KeySpace, items: readonly PeekItem[]): Promise<Peeked[]> {
  const out: Peeked[] = new Array<Peeked>(items.length);
  const groups = keys.groupByShard(
    items.map((item, i) => ({ item, i })),
    ({ item }) => item.accountId,
  );
  // One script call per shard, in parallel; each answer carries its own shard's marks epoch.
  await Promise.all(
    [...groups].map(async ([k, group]) => {
      const results = await peekMany(redis, keys, keys.shards[k]!, group.map(({ item }) => item));
      group.forEach(({ i }, j) => (out[i] = results[j]!));
    }),
  );
  return out;
}

/**
 * Writes index entries computed from the account at `seq`, only if it is
 * still at `seq` (a newer state's writer indexed it itself). Returns whether it did.
 */
export async function reindexAt(redis: RedisClient, keys: KeySpace, accountId: number, seq: number, index: (w: IndexWriter) => void): Promise<boolean> {
  const ops = new IndexOps();
  index(ops);
  const table = new KeyTable(3);
  const args: (string | number)[] = [seq, ops.ops.length];
  for (const [op, key, score, member] of ops.ops) args.push(op, table.ref(key), score, member);
  const reply = await runScript(redis, SCRIPTS.accountReindex, [2 + table.keys.length, keys.account(accountId).state, keys.shardFor(accountId).rev, ...table.keys, ...args]);
  return reply === 1;
}

/**
 * One command, no lock: whether the account is free, its seq (its state only
 * when `cachedSeq` is stale), a booked client order, and the marks' epoch and
 * boot marker. Concurrent calls share one script call.
 */
export function peekAccount(redis: RedisClient, keys: KeySpace, accountId: number, cachedSeq: number | null, clientOrderId: string | null): Promise<Peeked> {
  return batchersFor(redis, keys, accountId).peek.call({ accountId, cachedSeq, clientOrderId });
}

/** How many accounts Redis holds: every shard's account set, counted in parallel. */
export async function accountCount(redis: RedisClient, keys: KeySpace): Promise<number> {
  const counts = await Promise.all(keys.shards.map((k) => redis.scard(k.accounts)));
  return counts.reduce((a, b) => a + b, 0);
}
