/**
 * Redis client construction and the key layout.
 *
 * The keys are split into `shards` index shards, each with its own hash tag
 * (`{T_k}`, chosen by shardTags so the shards' slots spread evenly over a
 * cluster's 16384). Account N belongs to shard N mod shards, and every key a
 * script touches for it lives in that shard's slot: the account's own keys,
 * the shard's part of the risk index, its report revision and its copy of the
 * marks. So every script call touches one slot, and the engine runs on one
 * node or on a Redis Cluster alike. Single-key structures (the engine
 * registry) keep their own slot.
 */
import slotOf from 'cluster-key-slot';
import { Cluster, Redis } from 'ioredis';

/** The client the engine talks to Redis through: one node, or a Redis Cluster. */
export type RedisClient = Redis | Cluster;

export interface RedisOptions {
  readonly url: string;
  /** A Redis Cluster's seed nodes (REDIS_CLUSTER_NODES); null for one node at `url`. */
  readonly clusterNodes?: readonly { host: string; port: number }[] | null;
  readonly commandTimeoutMs: number;
}

/**
 * Commands fail at once while the connection is down (no offline queue, no
 * per-command retries) and give up after `commandTimeoutMs`, so a request
 * answers 503 quickly instead of hanging; the client keeps reconnecting in the
 * background and service resumes by itself.
 */
export function createRedis(options: RedisOptions): RedisClient {
  if (options.clusterNodes) {
    return new Cluster([...options.clusterNodes], {
      lazyConnect: true,
      enableAutoPipelining: false,
      enableOfflineQueue: false,
      // Every command to the primary that owns its slot: a replica may lag, and the scripts write.
      scaleReads: 'master',
      // A failed slot-map refresh gives up soon, so a request is not held behind it.
      slotsRefreshTimeout: options.commandTimeoutMs,
      clusterRetryStrategy: (attempt) => Math.min(50 * attempt, 1000),
      redisOptions: {
        maxRetriesPerRequest: 0,
        commandTimeout: options.commandTimeoutMs,
        connectTimeout: options.commandTimeoutMs,
      },
    });
  }
  return new Redis(options.url, {
    lazyConnect: true,
    // No auto-pipelining: ioredis runs one auto-pipeline at a time, so a
    // command stuck in it (a hung Redis, or just the recovery watch's probe)
    // holds every later one back until it times out, and a request waits out
    // two timeouts. Each command goes out at once with its own timeout; the
    // hot path's scripts are batched by the engine itself (store/batcher.ts).
    enableAutoPipelining: false,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: options.commandTimeoutMs,
    connectTimeout: options.commandTimeoutMs,
    retryStrategy: (attempt) => Math.min(50 * attempt, 1000),
  });
}

/** The number of hash slots of a Redis Cluster. */
export const SLOTS = 16384;

/**
 * The hash tags of `shards` shards: for shard k, the first `s<k>.<j>` whose
 * slot is nearest (k + 0.5) · 16384 / shards, so the shards sit evenly over
 * the slot range and primaries holding contiguous slot ranges each get an
 * equal share. Deterministic: every process derives the same tags.
 */
export function shardTags(shards: number): string[] {
  const tags: string[] = [];
  for (let k = 0; k < shards; k++) {
    const target = Math.floor(((k + 0.5) * SLOTS) / shards);
    let best = `s${k}.0`;
    let distance = Number.POSITIVE_INFINITY;
    for (let j = 0; j < 4 * SLOTS && distance > 0; j++) {
      const tag = `s${k}.${j}`;
      const d = Math.abs(slotOf(tag) - target);
      if (d < distance) [best, distance] = [tag, d];
    }
    tags.push(best);
  }
  return tags;
}

/** The primaries to run a node-wide command on (SCRIPT LOAD, SCAN): every primary of a cluster, or the one node. */
export function primaries(redis: RedisClient): Redis[] {
  return redis instanceof Cluster ? redis.nodes('master') : [redis];
}

/** Calls `found` with every key matching `pattern`, a SCAN batch at a time, on every primary. */
export async function scanAll(redis: RedisClient, pattern: string, found: (keys: string[]) => Promise<unknown>, count = 5000): Promise<void> {
  // A cluster that is not ready may not know every primary yet: a partial scan would pass for a complete one.
  if (redis instanceof Cluster && redis.status !== 'ready') throw new Error(`redis cluster not ready (${redis.status})`);
  for (const node of primaries(redis)) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', count);
      if (keys.length > 0) await found(keys);
      cursor = next;
    } while (cursor !== '0');
  }
}

/** Keys grouped by their cluster slot (a multi-key command may not span slots on a cluster). */
export function bySlot(keys: readonly string[]): Map<number, string[]> {
  const groups = new Map<number, string[]>();
  for (const key of keys) {
    const slot = slotOf(key);
    let g = groups.get(slot);
    if (g === undefined) groups.set(slot, (g = []));
    g.push(key);
  }
  return groups;
}

const tagCache = new Map<number, readonly string[]>();
function tagsOf(shards: number): readonly string[] {
  let tags = tagCache.get(shards);
  if (tags === undefined) tagCache.set(shards, (tags = shardTags(shards)));
  return tags;
}

export interface AccountKeys {
  readonly state: string;
  readonly lock: string;
  readonly lockWaiter: string;
  readonly clientOrders: string;
  /** Set for a while after writers collided on the account: until it expires, every writer takes the lock. */
  readonly contended: string;
}

/** The keys of one shard: its copy of the marks, its part of the risk index and its revision (risk-index.ts names the index keys). */
export class ShardKeys {
  /** `<prefix>:{T_k}`: every key of the shard starts with it. */
  readonly base: string;
  /** This shard's copy of the marks hash (every shard holds them all; see markets.ts publishMarket). */
  readonly marks: string;
  /** Symbols by this shard's marks epoch of their last change (mark or market): lets readers re-read only what changed. */
  readonly marklog: string;
  /** The shard's accounts. */
  readonly accounts: string;
  /** The shard's report revision: bumped by every change to one of its accounts or to a mark (see risk-index.ts). */
  readonly rev: string;

  constructor(
    readonly shard: number,
    readonly tag: string,
    prefix: string,
  ) {
    this.base = `${prefix}:{${tag}}`;
    this.marks = `${this.base}:marks`;
    this.marklog = `${this.base}:marklog`;
    this.accounts = `${this.base}:accounts`;
    this.rev = `${this.base}:rev`;
  }
}

export class KeySpace {
  /** Every shard's keys, by shard number. */
  readonly shards: readonly ShardKeys[];
  /** Engine processes serving this key prefix: a sorted set of instance ids by last heartbeat (ms). */
  readonly engines: string;

  /**
   * `clientOrderTtlMs`: how long an account's client-order hash outlives the
   * last order stored in it (0: for ever). It only holds answers to repeats;
   * the ledger's unique index keeps client order ids for good. `shards`: the
   * number of index shards (REDIS_SHARDS).
   */
  constructor(
    readonly prefix: string,
    readonly clientOrderTtlMs = 0,
    shards = 1,
  ) {
    if (!Number.isInteger(shards) || shards < 1) throw new Error(`shards must be a positive integer, got ${shards}`);
    this.shards = tagsOf(shards).map((tag, k) => new ShardKeys(k, tag, prefix));
    this.engines = `${prefix}:engines`;
  }

  /** The shard account `accountId` belongs to. */
  shardOf(accountId: number): number {
    return accountId % this.shards.length;
  }

  /** The keys of the shard account `accountId` belongs to. */
  shardFor(accountId: number): ShardKeys {
    return this.shards[accountId % this.shards.length]!;
  }

  /** Shard 0's keys: what a reader that needs any one copy of the marks reads. */
  get first(): ShardKeys {
    return this.shards[0]!;
  }

  account(accountId: number): AccountKeys {
    const tag = `${this.shardFor(accountId).base}:a${accountId}`;
    return {
      state: `${tag}:state`,
      lock: `${tag}:lock`,
      lockWaiter: `${tag}:lockwait`,
      clientOrders: `${tag}:coid`,
      contended: `${tag}:contended`,
    };
  }

  /** Account ids grouped by shard (shard number → ids, in the order given). */
  groupByShard<T>(items: readonly T[], accountOf: (item: T) => number): Map<number, T[]> {
    const groups = new Map<number, T[]>();
    for (const item of items) {
      const k = this.shardOf(accountOf(item));
      let g = groups.get(k);
      if (g === undefined) groups.set(k, (g = []));
      g.push(item);
    }
    return groups;
  }
}
