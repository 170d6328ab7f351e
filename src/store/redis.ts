/**
 * Redis client construction and the key layout.
 *
 * Every key of one account carries the hash tag `{a<id>}`. The hot path's
 * scripts also read and write global keys (the marks hash, the risk index,
 * the report revision) in the same call as an account's keys, so the engine
 * needs one Redis node (or a primary with replicas), not a cluster.
 */
import { Redis } from 'ioredis';

export interface RedisOptions {
  readonly url: string;
  readonly commandTimeoutMs: number;
}

/**
 * Commands fail at once while the connection is down (no offline queue, no
 * per-command retries) and give up after `commandTimeoutMs`, so a request
 * answers 503 quickly instead of hanging; the client keeps reconnecting in the
 * background and service resumes by itself.
 */
export function createRedis(options: RedisOptions): Redis {
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

export interface AccountKeys {
  readonly state: string;
  readonly lock: string;
  readonly lockWaiter: string;
  readonly clientOrders: string;
  /** Set for a while after writers collided on the account: until it expires, every writer takes the lock. */
  readonly contended: string;
}

export class KeySpace {
  readonly marks: string;
  /** Symbols by the marks epoch of their last change (mark or market): lets readers re-read only what changed. */
  readonly marklog: string;
  readonly accounts: string;
  /** The report revision: bumped by every change to an account or a mark (see risk-index.ts). */
  readonly rev: string;
  /** Engine processes serving this key prefix: a sorted set of instance ids by last heartbeat (ms). */
  readonly engines: string;

  /**
   * `clientOrderTtlMs`: how long an account's client-order hash outlives the
   * last order stored in it (0: for ever). It only holds answers to repeats;
   * the ledger's unique index keeps client order ids for good.
   */
  constructor(
    readonly prefix: string,
    readonly clientOrderTtlMs = 0,
  ) {
    this.marks = `${prefix}:marks`;
    this.marklog = `${prefix}:marklog`;
    this.accounts = `${prefix}:accounts`;
    this.rev = `${prefix}:rev`;
    this.engines = `${prefix}:engines`;
  }

  account(accountId: number): AccountKeys {
    const tag = `${this.prefix}:{a${accountId}}`;
    return {
      state: `${tag}:state`,
      lock: `${tag}:lock`,
      lockWaiter: `${tag}:lockwait`,
      clientOrders: `${tag}:coid`,
      contended: `${tag}:contended`,
    };
  }
}
