/**
 * One operation at a time per account, across connections and across engine
 * processes sharing one Redis.
 *
 * Inside a process, operations on one account queue on a promise chain, so they
 * never contend with each other. Across processes, the last line of defence is
 * the ledger's primary key (account_id, seq): it refuses a second writer that
 * computed from the same state, and that writer catches up and runs again.
 *
 * Three ways in:
 * - trusted (trades, cash, on a cached account while this process is the
 *   only engine): no read at all; the ledger's key fences the commit, and a
 *   refusal is confirmed on the optimistic path.
 * - optimistic (trades, cash otherwise): one lock-free read (PEEK) of the
 *   account's seq and the marks; the state comes from this process's cache
 *   when Redis is still at the cached seq. Defers to the lock when another
 *   writer holds it.
 * - locked (liquidations, threshold refreshes, and a retry after a conflict): a
 *   Redis lease lock taken in the same round trip that reads the account, so
 *   slow or contended work takes turns instead of colliding.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { DependencyUnavailable, EngineError, type ErrorCode } from '../domain/errors.js';
import type { Market } from '../domain/markets.js';
import type { Marks } from '../domain/margin.js';
import { acquireAccount, peekAccount, releaseAccount, type MarkBook, type StoredAccount } from '../store/accounts.js';
import { heartbeat, leave } from '../store/engines.js';
import type { KeySpace } from '../store/redis.js';
import type { AccountCache } from './account-cache.js';
import { redisCall } from './dependencies.js';

export interface Snapshot {
  readonly account: StoredAccount;
  readonly marks: Marks;
  /** The listed markets, as of the same read as the marks. */
  readonly markets: ReadonlyMap<string, Market>;
  /** The marks' change counter when they were read. */
  readonly marksEpoch: string | null;
  /** The stored result of this client order id, when it was booked before. */
  readonly clientOrder: string | null;
}

/** What an operation holds while it runs: the lock's token ('' on the optimistic path), and whether the lock has been dealt with. */
export class Lease {
  /** Set once the lock was released (or handed to a background completion). */
  settled = false;
  /**
   * Set on the trusted path: the operation may be answered as soon as its
   * rows are committed, its Redis apply following (see AccountGate.follow).
   */
  ackAtCommit = false;
  constructor(readonly token: string) {}
}

export type GateMode = 'optimistic' | 'locked';

export interface GateOptions {
  readonly lockTtlMs: number;
  /** Longest wait for another process's lock before answering ACCOUNT_BUSY. */
  readonly lockWaitMs: number;
  /** How recently the marks must have been confirmed for the trusted path (0: never take it). */
  readonly marksMaxAgeMs: number;
  /** 'auto': the trusted path only while this is the only engine process on the key prefix. */
  readonly trustedPath: 'auto' | 'on' | 'off';
  /** Longest a read waits for this process's acknowledged writes to reach Redis before answering 503 (only a Redis failure makes it wait that long). */
  readonly appliedWaitMs: number;
}

/**
 * Refusals decided on the trusted path's cached book: each is confirmed on
 * a fresh read before it is answered (the book may be up to MARKS_MAX_AGE_MS
 * old; a market listed or a mark moved through another process meanwhile
 * could change the answer).
 */
const CONFIRMED_REFUSALS = new Set<ErrorCode>(['INSUFFICIENT_MARGIN', 'MARKET_NOT_FOUND', 'MARKET_HALTED', 'MARKET_REDUCE_ONLY', 'PRICE_OUT_OF_BAND']);

/** The tail of an account no operation is queued on. */
const SETTLED: Promise<unknown> = Promise.resolve();

/** How long an account another process wrote under this one stays off the trusted path here. */
const SHARED_MS = 60_000;

export class AccountGate {
  private readonly tails = new Map<number, Promise<unknown>>();
  /** Redis applies still running for operations already answered at their commit, by account. */
  private readonly applying = new Map<number, Promise<unknown>>();
  private readonly instanceId = randomUUID();
  /** Accounts another process wrote under this one lately (a collision at the ledger's key): until when they skip the trusted path. */
  private readonly shared = new Map<number, number>();
  /** Until when the last heartbeat showed no other engine process on the key prefix (performance.now()). */
  private soloUntil = Number.NEGATIVE_INFINITY;
  private heartbeat: NodeJS.Timeout | null = null;

  constructor(
    private readonly redis: Redis,
    private readonly keys: KeySpace,
    private readonly marks: MarkBook,
    private readonly cache: AccountCache,
    private readonly options: GateOptions,
  ) {}

  /** Runs `operation` on the account's current state (plus all marks), one at a time per account. */
  run<T>(
    accountId: number,
    clientOrderId: string | null,
    operation: (snapshot: Snapshot, lease: Lease) => Promise<T>,
    mode: GateMode = 'locked',
  ): Promise<T> {
    const previous = this.tails.get(accountId) ?? SETTLED;
    const current = previous.then(() =>
      mode === 'optimistic' ? this.optimistic(accountId, clientOrderId, operation) : this.locked(accountId, clientOrderId, operation),
    );
    // The account's next operation starts once this one is over (succeeded or
    // failed), its Redis apply included, even when this one was answered at its commit.
    const over = () => this.applying.get(accountId);
    const tail = current.then(over, over);
    this.tails.set(accountId, tail);
    void tail.then(() => {
      if (this.tails.get(accountId) === tail) this.tails.delete(accountId);
    });
    return current;
  }

  private async optimistic<T>(accountId: number, clientOrderId: string | null, operation: (snapshot: Snapshot, lease: Lease) => Promise<T>): Promise<T> {
    const cached = this.cache.get(accountId);
    // Trusted path: no read at all. The cached state is the ledger's at its
    // seq, and the commit of seq + 1 is refused if anyone wrote seq + 1 first,
    // so an acceptance can never rest on a stale state. A refusal could, so a
    // refusal is confirmed on the peek path below before it is answered.
    // A client order id booked before is caught the same way, by the ledger's
    // unique index on it; the retry then reads its first result. Every
    // operation peeks while the Redis client is not connected, so an outage
    // answers 503 before anything is booked.
    const book =
      cached !== undefined && this.trusting() && this.redis.status === 'ready' && !this.isShared(accountId)
        ? this.marks.trusted(this.options.marksMaxAgeMs)
        : null;
    if (book !== null) {
      const lease = new Lease('');
      lease.settled = true;
      lease.ackAtCommit = true;
      try {
        return await operation({ account: cached!, marks: book.marks, markets: book.markets, marksEpoch: book.epoch, clientOrder: null }, lease);
      } catch (error) {
        if (!(error instanceof EngineError && CONFIRMED_REFUSALS.has(error.code))) throw error;
      }
    }
    const peeked = await redisCall(() => peekAccount(this.redis, this.keys, this.marks, accountId, cached?.seq ?? null, clientOrderId));
    if (!peeked.free) return this.locked(accountId, clientOrderId, operation);
    let account = peeked.account;
    if (account === null) account = cached!;
    else if (account.seq > 0) this.cache.set(account);
    const lease = new Lease('');
    lease.settled = true;
    return operation({ account, marks: peeked.marks, markets: peeked.markets, marksEpoch: peeked.marksEpoch, clientOrder: peeked.clientOrder }, lease);
  }

  private async locked<T>(accountId: number, clientOrderId: string | null, operation: (snapshot: Snapshot, lease: Lease) => Promise<T>): Promise<T> {
    const lease = new Lease(randomUUID());
    const deadline = Date.now() + this.options.lockWaitMs;
    let delayMs = 0.5;
    for (;;) {
      const got = await redisCall(() =>
        acquireAccount(this.redis, this.keys, this.marks, accountId, lease.token, this.options.lockTtlMs, this.instanceId, clientOrderId),
      );
      if (got.acquired) {
        try {
          const snapshot = { account: got.account, marks: got.marks, markets: got.markets, marksEpoch: got.marksEpoch, clientOrder: got.clientOrder };
          return await operation(snapshot, lease);
        } finally {
          if (!lease.settled) await this.release(accountId, lease);
        }
      }
      if (Date.now() >= deadline) {
        throw new EngineError('ACCOUNT_BUSY', `account ${accountId} is locked by another engine process; retry`, {
          account_id: accountId,
        });
      }
      await new Promise((r) => setTimeout(r, delayMs));
      delayMs = Math.min(delayMs * 2, 8);
    }
  }

  /**
   * An operation answered at its commit hands its Redis apply over: the
   * account's next operation, reads of the account, and anything waiting
   * for `applied()` wait for it. `apply` must not reject.
   */
  follow(accountId: number, apply: Promise<unknown>): void {
    this.applying.set(accountId, apply);
    void apply.then(() => {
      if (this.applying.get(accountId) === apply) this.applying.delete(accountId);
    });
  }

  /**
   * Resolves once Redis holds every operation this process has answered so
   * far (on `accountId`, or on every account): what a read waits for so a
   * client always sees its own acknowledged writes. An apply normally lands
   * within a round trip; if they have not all landed within `appliedWaitMs`,
   * Redis is failing (or crawling) and the caller answers 503 at once rather
   * than wait out a timeout of its own on top, or serve a state without them.
   */
  async applied(accountId?: number): Promise<void> {
    const pending = accountId !== undefined ? this.applying.get(accountId) : this.applying.size > 0 ? Promise.all(this.applying.values()) : undefined;
    if (pending === undefined) return;
    let timer: NodeJS.Timeout | undefined;
    const landed = await Promise.race([
      pending.then(() => true),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), this.options.appliedWaitMs))),
    ]);
    clearTimeout(timer);
    if (!landed) throw new DependencyUnavailable('redis');
  }

  /** Resolves once no operation is queued or running and every apply has landed (shutdown). */
  async idle(): Promise<void> {
    while (this.tails.size > 0 || this.applying.size > 0) {
      await Promise.all([...this.tails.values(), ...this.applying.values()]);
    }
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

  /** Releases the lock; a failure only delays the next holder until the lease expires. */
  async release(accountId: number, lease: Lease): Promise<void> {
    lease.settled = true;
    try {
      await releaseAccount(this.redis, this.keys, accountId, lease.token);
    } catch {
      // The lease's TTL frees it; nothing else depends on this reply.
    }
  }
}
