/**
 * How an operation gets an account's state: the three ways in, from cheapest
 * to safest. The AccountRunner picks one per attempt; nothing here decides
 * or writes.
 *
 * - trusted (trades, cash, on a cached account while this process is the
 *   only engine): no read at all. The cached state is the ledger's at its
 *   seq, and the commit of seq + 1 is refused if anyone wrote seq + 1 first,
 *   so an acceptance never rests on a stale state (a refusal could: the
 *   runner confirms refusals on a fresh read).
 * - peek (trades, cash otherwise): one lock-free read of the account's seq
 *   and the marks' epoch, shared with concurrent requests; the state comes
 *   from this process's cache when Redis is still at the cached seq. Gives
 *   way (null) when another writer holds the account's lock.
 * - locked (liquidations, threshold refreshes, and every retry after a
 *   conflict): a Redis lease lock taken in the same round trip that reads the
 *   account, so slow or contended work takes turns instead of colliding.
 */
import { randomUUID } from 'node:crypto';
import { EngineError } from '../domain/errors.js';
import type { Marks } from '../domain/margin.js';
import type { Market } from '../domain/markets.js';
import { acquireAccount, releaseAccount } from '../store/account-lock.js';
import { peekAccount, type StoredAccount } from '../store/account-state.js';
import { heartbeat, leave } from '../store/engines.js';
import type { Book, MarkBook } from '../store/mark-book.js';
import type { KeySpace, RedisClient } from '../store/redis.js';
import type { AccountCache } from './account-cache.js';
import { redisCall } from './dependencies.js';

/** What a decision is made on: the account, and every mark and market at one epoch. */
export interface Snapshot {
  readonly account: StoredAccount;
  readonly marks: Marks;
  /** The listed markets, as of the same read as the marks. */
  readonly markets: ReadonlyMap<string, Market>;
  /** The marks' change counter when they were read. */
  readonly marksEpoch: string | null;
  /** The stored result of the operation's client order id, when it was booked before (never read on the trusted path). */
  readonly clientOrder: string | null;
}

export interface GateOptions {
  readonly lockTtlMs: number;
  /** Longest wait for another process's lock before answering ACCOUNT_BUSY. */
  readonly lockWaitMs: number;
  /** How recently the marks must have been confirmed for the trusted path (0: never take it). */
  readonly marksMaxAgeMs: number;
  /** 'auto': the trusted path only while this is the only engine process on the key prefix. */
  readonly trustedPath: 'auto' | 'on' | 'off';
}

/** How long an account another process wrote under this one stays off the trusted path here. */
const SHARED_MS = 60_000;

const snapshotOf = (account: StoredAccount, book: Book, clientOrder: string | null): Snapshot => ({
  account,
  marks: book.marks,
  markets: book.markets,
  marksEpoch: book.epoch,
  clientOrder,
});

export class AccountGate {
  private readonly instanceId = randomUUID();
  /** Accounts another process wrote under this one lately (a collision at the ledger's key): until when they skip the trusted path. */
  private readonly shared = new Map<number, number>();
  /** Until when the last heartbeat showed no other engine process on the key prefix (performance.now()). */
  private soloUntil = Number.NEGATIVE_INFINITY;
  private heartbeat: NodeJS.Timeout | null = null;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: KeySpace,
    private readonly marks: MarkBook,
    private readonly cache: AccountCache,
    private readonly options: GateOptions,
  ) {}

  /**
   * The trusted path's snapshot (the cached account and marks), or null when
   * it may not be taken: no cached copy, another engine is about, the account
   * was shared lately, the marks' cache is not fresh, or the Redis client is
   * not connected (then every operation reads, so an outage answers 503
   * before anything is booked).
   */
  trusted(accountId: number): Snapshot | null {
    const cached = this.cache.get(accountId);
    if (cached === undefined || !this.trusting() || this.redis.status !== 'ready' || this.isShared(accountId)) return null;
    const book = this.marks.trusted(this.options.marksMaxAgeMs, this.marks.shardOf(accountId));
    return book === null ? null : snapshotOf(cached, book, null);
  }

  /** One lock-free read; null when another writer holds the account (take its lock instead). */
  async peek(accountId: number, clientOrderId: string | null): Promise<Snapshot | null> {
    const cached = this.cache.get(accountId);
    const peeked = await redisCall(() => peekAccount(this.redis, this.keys, accountId, cached?.seq ?? null, clientOrderId));
    const book = await redisCall(() => this.marks.at(peeked.marksEpoch, peeked.boot, this.marks.shardOf(accountId)));
    if (!peeked.free) return null;
    let account = peeked.account;
    if (account === null) account = cached!;
    else if (account.seq > 0) this.cache.set(account);
    return snapshotOf(account, book, peeked.clientOrder);
  }

  /**
   * Takes the account's lock (waiting up to lockWaitMs for another holder)
   * and reads it, in one round trip with the marks. The caller releases the
   * lock with `token` (the apply script does, when rows are written).
   */
  async lock(accountId: number, clientOrderId: string | null): Promise<{ snapshot: Snapshot; token: string }> {
    const token = randomUUID();
    const request = { accountId, token, ttlMs: this.options.lockTtlMs, waiterId: this.instanceId, clientOrderId };
    const deadline = Date.now() + this.options.lockWaitMs;
    let delayMs = 0.5;
    for (;;) {
      const [got, book] = await Promise.allSettled([redisCall(() => acquireAccount(this.redis, this.keys, request)), redisCall(() => this.marks.snapshot(this.marks.shardOf(accountId)))]);
      if (got.status === 'rejected') throw got.reason;
      if (book.status === 'rejected') {
        // The lock may be ours; do not leave it to expire.
        if (got.value.acquired) await this.release(accountId, token);
        throw book.reason;
      }
      if (got.value.acquired) return { snapshot: snapshotOf(got.value.account, book.value, got.value.clientOrder), token };
      if (Date.now() >= deadline) {
        throw new EngineError('ACCOUNT_BUSY', `account ${accountId} is locked by another engine process; retry`, { account_id: accountId });
      }
      await new Promise((r) => setTimeout(r, delayMs));
      delayMs = Math.min(delayMs * 2, 8);
    }
  }

  /** Releases the lock; a failure only delays the next holder until the lease expires. */
  async release(accountId: number, token: string): Promise<void> {
    try {
      await releaseAccount(this.redis, this.keys, accountId, token);
    } catch {
      // The lease's TTL frees it; nothing else depends on this reply.
    }
  }

  /**
   * Another process wrote this account under this one (a write collided at
   * the ledger's key): for SHARED_MS, its operations here read before
   * deciding instead of colliding again.
   */
  noteShared(accountId: number): void {
    const now = performance.now();
    // Bounded: expired entries go whenever the map grows large.
    if (this.shared.size >= 10_000) for (const [id, until] of this.shared) if (until <= now) this.shared.delete(id);
    this.shared.set(accountId, now + SHARED_MS);
  }

  private isShared(accountId: number): boolean {
    const until = this.shared.get(accountId);
    if (until === undefined) return false;
    if (performance.now() < until) return true;
    this.shared.delete(accountId);
    return false;
  }

  private trusting(): boolean {
    const mode = this.options.trustedPath;
    return mode === 'on' || (mode === 'auto' && performance.now() < this.soloUntil);
  }

  /**
   * Heartbeats this process into the key prefix's engine set every `everyMs`
   * and learns whether it is alone there: the trusted path in 'auto' mode is
   * taken only then (two processes writing the same accounts would keep
   * colliding at the ledger's key). The answer holds for three beats.
   */
  startHeartbeat(everyMs = 500): void {
    // Every engine beats, whatever its own mode, so that 'auto' engines see it.
    if (this.heartbeat) return;
    const beat = async () => {
      try {
        const count = await heartbeat(this.redis, this.keys, this.instanceId, 3 * everyMs);
        this.soloUntil = count === 1 ? performance.now() + 3 * everyMs : Number.NEGATIVE_INFINITY;
      } catch {
        this.soloUntil = Number.NEGATIVE_INFINITY;
      }
    };
    void beat();
    this.heartbeat = setInterval(() => void beat(), everyMs);
    this.heartbeat.unref();
  }

  /** Stops the heartbeat and leaves the engine set. */
  async stopHeartbeat(): Promise<void> {
    if (!this.heartbeat) return;
    clearInterval(this.heartbeat);
    this.heartbeat = null;
    this.soloUntil = Number.NEGATIVE_INFINITY;
    await leave(this.redis, this.keys, this.instanceId).catch(() => undefined);
  }
}
