/**
 * Runs one decision on one account: the only place that queues, reads,
 * commits, applies and retries an account's writes. Trades, cash movements
 * and liquidations all come through `run`:
 *
 * 1. Queue: one operation at a time per account in this process (a promise
 *    chain), its Redis apply included.
 * 2. State: from the AccountGate, the cheapest safe way (trusted, peek, or
 *    under the account's lock).
 * 3. Decide: the caller's decision, a pure function of that state, returns
 *    the ledger rows to book, an answer with nothing to book, or a refusal.
 * 4. Commit: the rows through the group committer (PostgreSQL first: a 200
 *    is durable). The ledger's key (account_id, seq) refuses rows computed
 *    from a stale state.
 * 5. Apply: in one Redis round trip, the new state (guarded by the seq it was
 *    computed from), the account's risk-index moves, the lock's release, the
 *    report revision, and the marks' epoch (did a mark move meanwhile?).
 * 6. Retry: rows refused at the ledger's key mean Redis was behind (or
 *    another engine wrote first): replay the missing rows and run again,
 *    under the lock.
 */
import type { Logger } from 'pino';
import { str } from '../domain/decimal.js';
import { DependencyUnavailable, EngineError, type ErrorCode } from '../domain/errors.js';
import { liquidationThresholds } from '../domain/liquidation.js';
import { marketRules, type AccountState, type MarginTotals, type RiskParams } from '../domain/margin.js';
import { markContended } from '../store/account-lock.js';
import { applyAccount, applyAccounts, peekAccounts, type AccountUpdate, type ApplyRequest, type Peeked } from '../store/account-state.js';
import { rememberClientOrder } from '../store/client-orders.js';
import {
  GroupCommitter,
  LedgerConflict,
  LedgerUnavailable,
  entryByClientOrder,
  entryOf,
  type CommittedRow,
  type LedgerEntry,
  type LedgerRow,
  type LiquidationRecord,
  type RowKey,
} from '../store/ledger.js';
import type { Book, MarkBook } from '../store/mark-book.js';
import type { MarginCallRecord } from '../store/margin-calls.js';
import type { Sql } from '../store/postgres.js';
import type { KeySpace, RedisClient } from '../store/redis.js';
import { queueIndexUpdate, sidesOf, tieredEntries, type RiskKeys } from '../store/risk-index.js';
import type { AccountCache } from './account-cache.js';
import type { AccountGate, Snapshot } from './account-gate.js';
import { TimeoutError, isPostgresUnavailable, postgresCall, redisCall, withTimeout } from './dependencies.js';
import { catchUp, reindexAccount, storedClientOrder } from './ledger-sync.js';

/** What a decision on an account's snapshot comes to. */
export type Decision<R> =
  /** Refused: nothing is booked and the error is the answer. */
  | { readonly kind: 'refuse'; readonly error: EngineError }
  /** Nothing to book (a repeated client order, an account that need not be liquidated). */
  | { readonly kind: 'answer'; readonly result: R }
  | {
      readonly kind: 'book';
      /** The ledger rows, numbered from the snapshot's seq + 1. */
      readonly rows: LedgerRow[];
      /** The account once the rows are applied. */
      readonly after: AccountState;
      /** Its margin totals at the snapshot's marks, when the decision has them (they save valuing it again for the risk index). */
      readonly totals?: MarginTotals;
      /** A liquidation's record, committed with its rows. */
      readonly liquidation?: LiquidationRecord;
      /** The account's margin call (its status got worse), committed with its rows. */
      readonly marginCall?: MarginCallRecord | undefined;
      /** The answer, from the committed entries (ids and timestamps are the commit's). */
      readonly result: (entries: readonly LedgerEntry[]) => R;
    };

export interface Outcome<R> {
  readonly result: R;
  /** Rows were committed. */
  readonly booked: boolean;
  /** The answer was given at the commit, the Redis apply still running (the trusted path). */
  readonly answeredAtCommit: boolean;
  /** Resolves, never rejects, once Redis holds the rows (or gave up): whether a mark moved between the decision and the write. */
  readonly landed: Promise<boolean>;
}

export type RunMode =
  /** Trusted or peek path first (trades, cash). */
  | 'optimistic'
  /** Under the account's lock (liquidations). */
  | 'locked';

export interface RunOptions {
  readonly mode: RunMode;
  /** The operation's client order id: its stored first result is read with the state. */
  readonly clientOrderId?: string | null;
}

export interface AccountRunnerDeps {
  readonly redis: RedisClient;
  readonly sql: Sql;
  readonly keys: KeySpace;
  readonly risk: RiskKeys;
  readonly gate: AccountGate;
  readonly cache: AccountCache;
  readonly marks: MarkBook;
  readonly committer: GroupCommitter;
  /** Risk parameters of a symbol no market lists. */
  readonly riskDefaults: RiskParams;
  readonly timeoutMs: number;
  /** Longest a read waits for this process's acknowledged writes to reach Redis before answering 503 (only a Redis failure makes it wait that long). */
  readonly appliedWaitMs: number;
  readonly log: Logger;
  /** Told of an account whose committed rows did not reach Redis, so it is caught up in the background. */
  readonly onLagging?: (accountId: number) => void;
}

const MAX_ATTEMPTS = 4;
/** The ledger's unique index on (account_id, client_order_id). */
const CLIENT_ORDER_CONSTRAINT = 'ledger_client_order_id';
/** How long an account stays on the locked path after writers collided on it. */
const CONTENDED_MS = 2000;
/**
 * Refusals decided on the trusted path's cached book: each is confirmed on a
 * fresh read before it is answered (the book may be up to MARKS_MAX_AGE_MS
 * old; a market listed or a mark moved through another process meanwhile
 * could change the answer).
 */
const CONFIRMED_REFUSALS = new Set<ErrorCode>(['INSUFFICIENT_MARGIN', 'MARKET_NOT_FOUND', 'MARKET_HALTED', 'MARKET_REDUCE_ONLY', 'PRICE_OUT_OF_BAND']);
/** The tail of an account no operation is queued on. */
const SETTLED: Promise<unknown> = Promise.resolve();
const UNMOVED = Promise.resolve(false);

/** The ledger's unique index on (funding_id, account_id) of FUNDING rows. */
const FUNDING_CONSTRAINT = 'ledger_funding_once';

/**
 * The rows were refused because the account already has what they book (a
 * funding event's row, booked by an earlier run of the event): nothing was
 * booked now, and running the decision again would be refused the same way.
 */
export class AlreadyBooked extends Error {
  constructor(readonly constraint: string) {
    super(`already booked (${constraint})`);
    this.name = 'AlreadyBooked';
  }
}

/** Redis was behind PostgreSQL (a writer crashed or stalled between the two): catch up and run again. */
class StaleState extends Error {
  /** `clientOrder`: what collided was the client order id, booked before; the state itself may be current. */
  constructor(
    readonly fromSeq: number,
    readonly clientOrder: boolean,
  ) {
    super(clientOrder ? 'client order id already booked' : 'account state is behind the ledger');
  }
}

/** What `runMany` did with the accounts it was given. */
export interface BulkOutcome {
  /** Accounts whose row was committed (and applied to Redis, or left to catch-up when Redis refused it). */
  readonly booked: number;
  /** Accounts whose decision booked nothing. */
  readonly unchanged: number;
  /**
   * Accounts not done here, for `run` to do one at a time: busy in this
   * process, held by another writer's lock (or contended), decided other
   * than one row to book, or refused at the ledger's keys.
   */
  readonly left: number[];
  /** Accounts a store failure (`error`) left undone: nothing of theirs is booked, or a commit's outcome is left to catch-up. */
  readonly failed: number[];
  readonly error: unknown;
}

/** A bulk decision to book one row, with the snapshot it was made on. */
interface Booking<R> {
  readonly snapshot: Snapshot;
  readonly decision: Decision<R> & { kind: 'book' };
}

/** Accounts per apply script call on the bulk path (the calls of one bulk write go out together). */
const APPLY_BATCH = 500;

/** The snapshot a decision was made on, and the account's lock if held ('' for none). */
interface Held {
  readonly snapshot: Snapshot;
  readonly token: string;
  /** Answer at the commit and let the apply follow (the trusted path). */
  readonly answerAtCommit: boolean;
}

export class AccountRunner {
  private readonly tails = new Map<number, Promise<unknown>>();
  /** Redis applies still running for operations already answered at their commit, by account. */
  private readonly applying = new Map<number, Promise<unknown>>();

  constructor(private readonly deps: AccountRunnerDeps) {}

  /** Decides on the account's current state and books what the decision says, one operation at a time per account. */
  run<R>(accountId: number, decide: (s: Snapshot) => Decision<R>, { mode, clientOrderId = null }: RunOptions): Promise<Outcome<R>> {
    return this.queued(accountId, () => this.attempts(accountId, decide, mode, clientOrderId));
  }

  /** Runs read-only work on the account's state under its lock, queued like any operation (nothing is booked). */
  inspect<T>(accountId: number, work: (s: Snapshot) => Promise<T>): Promise<T> {
    return this.queued(accountId, async () => {
      const { snapshot, token } = await this.deps.gate.lock(accountId, null);
      try {
        return await work(snapshot);
      } finally {
        await this.deps.gate.release(accountId, token);
      }
    });
  }

  /**
   * Resolves once Redis holds every operation this process has answered so
   * far (on `accountId`, or on every account): what a read waits for so a
   * client always sees its own acknowledged writes. An apply normally lands
   * within a round trip; if they have not all landed within `appliedWaitMs`,
   * Redis is failing (or crawling) and the caller answers 503 at once rather
   * than serve a state without them.
   */
  async applied(accountId?: number): Promise<void> {
    const pending = accountId !== undefined ? this.applying.get(accountId) : this.applying.size > 0 ? Promise.all(this.applying.values()) : undefined;
    if (pending === undefined) return;
    try {
      await withTimeout(pending, this.deps.appliedWaitMs, 'redis apply');
    } catch {
      throw new DependencyUnavailable('redis');
    }
  }

  /** Resolves once no operation is queued or running and every apply has landed (shutdown). */
  async idle(): Promise<void> {
    while (this.tails.size > 0 || this.applying.size > 0) {
      await Promise.all([...this.tails.values(), ...this.applying.values()]);
    }
  }

  /** Runs `op` after the account's previous operation is over, its Redis apply included (even when that one was answered at its commit). */
  private queued<T>(accountId: number, op: () => Promise<T>): Promise<T> {
    const current = (this.tails.get(accountId) ?? SETTLED).then(op);
    const over = () => this.applying.get(accountId);
    const tail = current.then(over, over);
    this.tails.set(accountId, tail);
    void tail.then(() => {
      if (this.tails.get(accountId) === tail) this.tails.delete(accountId);
    });
    return current;
  }

  /** The first attempt takes `mode`; a retry after a conflict catches Redis up and runs under the lock. */
  private async attempts<R>(accountId: number, decide: (s: Snapshot) => Decision<R>, mode: RunMode, clientOrderId: string | null): Promise<Outcome<R>> {
    for (let attempt = 1; ; attempt++) {
      // During a PostgreSQL outage nothing can be booked: say so before queueing for the lock.
      if (this.deps.committer.unavailable) throw new DependencyUnavailable('postgres');
      try {
        const { held, decision } = await this.decided(accountId, decide, attempt === 1 ? mode : 'locked', clientOrderId);
        return await this.settle(held, decision);
      } catch (error) {
        if (!(error instanceof StaleState)) throw error;
        if (attempt >= MAX_ATTEMPTS) {
          throw new EngineError('ACCOUNT_BUSY', `account ${accountId} kept changing under this request; nothing was booked, retry`, {
            account_id: accountId,
          });
        }
        await this.catchUpAfter(accountId, error, clientOrderId);
      }
    }
  }

  /**
   * The state, and the decision on it. The trusted path's refusals are
   * confirmed on a fresh read: `decide` is pure, so deciding again costs
   * nothing but the read.
   */
  private async decided<R>(
    accountId: number,
    decide: (s: Snapshot) => Decision<R>,
    mode: RunMode,
    clientOrderId: string | null,
  ): Promise<{ held: Held; decision: Decision<R> }> {
    const { gate } = this.deps;
    if (mode === 'optimistic') {
      const trusted = gate.trusted(accountId);
      if (trusted !== null) {
        const decision = decide(trusted);
        if (!(decision.kind === 'refuse' && CONFIRMED_REFUSALS.has(decision.error.code))) {
          return { held: { snapshot: trusted, token: '', answerAtCommit: true }, decision };
        }
      }
      const peeked = await gate.peek(accountId, clientOrderId);
      if (peeked !== null) return { held: { snapshot: peeked, token: '', answerAtCommit: false }, decision: decide(peeked) };
    }
    const { snapshot, token } = await gate.lock(accountId, clientOrderId);
    try {
      return { held: { snapshot, token, answerAtCommit: false }, decision: decide(snapshot) };
    } catch (error) {
      await gate.release(accountId, token);
      throw error;
    }
  }

  /** Books what the decision says (or answers it), releasing the lock on every path. */
  private async settle<R>(held: Held, decision: Decision<R>): Promise<Outcome<R>> {
    const accountId = held.snapshot.account.accountId;
    if (decision.kind !== 'book') {
      if (held.token !== '') await this.deps.gate.release(accountId, held.token);
      if (decision.kind === 'refuse') throw decision.error;
      return { result: decision.result, booked: false, answeredAtCommit: false, landed: UNMOVED };
    }
    const entries = await this.commit(held, decision);
    // The apply releases the lock in the same script.
    const landed = this.applyOrLag(held, decision, entries);
    const result = decision.result(entries);
    if (!held.answerAtCommit) {
      await landed;
      return { result, booked: true, answeredAtCommit: false, landed };
    }
    // Durable now: answer, and let the apply follow. The account's next
    // operation and this process's reads of it wait for the apply, so no one
    // here sees the account without this write.
    this.applying.set(accountId, landed);
    void landed.then(() => {
      if (this.applying.get(accountId) === landed) this.applying.delete(accountId);
    });
    return { result, booked: true, answeredAtCommit: true, landed };
  }

  /** Commits the rows; on failure the lock is released (or kept until a commit in doubt is decided) and the error says why. */
  private async commit<R>(held: Held, decision: Decision<R> & { kind: 'book' }): Promise<LedgerEntry[]> {
    const { committer, gate, timeoutMs, log } = this.deps;
    const { account } = held.snapshot;
    const pending = committer.submit(decision.rows, decision.liquidation, decision.marginCall);
    try {
      return entriesOf(decision.rows, await withTimeout(pending, timeoutMs, 'ledger commit'));
    } catch (error) {
      this.deps.cache.delete(account.accountId);
      if (error instanceof TimeoutError) {
        // Still pending: keep the lock until PostgreSQL decides, then apply or
        // release, so the account never runs ahead of its ledger.
        pending
          .then(
            (late) => this.apply(held, decision, entriesOf(decision.rows, late)),
            () => (held.token !== '' ? gate.release(account.accountId, held.token) : undefined),
          )
          .catch((e: unknown) => log.warn({ err: e, accountId: account.accountId }, 'late commit could not be applied to redis; catch-up will'));
      } else if (held.token !== '') {
        // A connection that died mid-commit may have committed: if the rows
        // did land, the next writer meets them at the ledger's key and
        // catches Redis up.
        await gate.release(account.accountId, held.token);
      }
      if (error instanceof LedgerConflict && error.constraint === FUNDING_CONSTRAINT) throw new AlreadyBooked(error.constraint);
      if (error instanceof LedgerConflict) throw new StaleState(account.seq, error.constraint === CLIENT_ORDER_CONSTRAINT);
      if (error instanceof TimeoutError || error instanceof LedgerUnavailable || isPostgresUnavailable(error)) {
        throw new DependencyUnavailable('postgres', error);
      }
      throw error;
    }
  }

  /**
   * The apply of rows already committed: resolves to whether the marks moved
   * meanwhile, and never rejects. The rows are booked in PostgreSQL, so the
   * answer is success whatever Redis does; if the apply fails, Redis catches
   * up from the ledger (the watch is told; the account's seq is behind).
   */
  private async applyOrLag<R>(held: Held, decision: Decision<R> & { kind: 'book' }, entries: LedgerEntry[]): Promise<boolean> {
    try {
      return await this.apply(held, decision, entries);
    } catch (error) {
      const accountId = held.snapshot.account.accountId;
      this.deps.cache.delete(accountId);
      this.deps.log.warn({ err: error, accountId, seq: entries[entries.length - 1]!.seq }, 'committed rows not applied to redis');
      // No liquidation re-check now: it would only wait out the same Redis
      // failure. The watch catches the account up and re-indexes it, so the
      // next tick (or operation) checks it.
      this.deps.onLagging?.(accountId);
      return false;
    }
  }

  /** Applies the committed state and moves the index, in one round trip. Returns whether the marks moved meanwhile. */
  private async apply<R>({ snapshot, token }: Held, decision: Decision<R> & { kind: 'book' }, entries: LedgerEntry[]): Promise<boolean> {
    const { redis, keys, cache, marks } = this.deps;
    const before = snapshot.account;
    const after = decision.after;
    const result = await applyAccount(redis, keys, this.applyRequest(snapshot, decision, updateOf(before, after, entries), token));
    // The reply read the marks' epoch and boot marker: it keeps the trusted path open, or closes it.
    marks.observe(result.marksEpoch, result.boot, marks.shardOf(before.accountId));
    const last = entries[entries.length - 1]!;
    if (result.applied) cache.set({ accountId: before.accountId, seq: last.seq, balance: after.balance, positions: after.positions });
    else {
      // Redis was not at the seq these rows follow (it lost its state, or
      // lags the ledger): the watch checks and catches the account up.
      cache.delete(before.accountId);
      this.deps.onLagging?.(before.accountId);
    }
    return result.marksEpoch !== snapshot.marksEpoch;
  }

  /** The Redis apply of committed rows (`update`), and the risk-index moves to the thresholds after them. */
  private applyRequest<R>(snapshot: Snapshot, decision: Decision<R> & { kind: 'book' }, update: AccountUpdate, token: string): ApplyRequest {
    const { risk, riskDefaults } = this.deps;
    const before = snapshot.account;
    const after = decision.after;
    const isNew = before.seq === 0;
    const rules = marketRules(snapshot.markets, riskDefaults);
    const thresholds = liquidationThresholds(after, snapshot.marks, rules, decision.totals);
    const tiered = tieredEntries(after, snapshot.marks, rules, decision.totals);
    return {
      update,
      token,
      isNew,
      index: (w) => queueIndexUpdate(w, risk, before.accountId, isNew ? null : sidesOf(before.positions), thresholds, tiered),
    };
  }

  /**
   * The bulk path: one decision on each of many accounts, for writes of one
   * row per account (a funding event's charges). Nothing is retried here;
   * whatever the bulk path does not do is left for `run`:
   *
   * 1. Queue: the accounts idle in this process are held in their queues
   *    (an operation that arrives meanwhile waits behind the bulk write, as
   *    behind any other); accounts with an operation queued or an apply in
   *    flight are left.
   * 2. State: one lock-free peek of them all (the cached state where Redis
   *    is still at its seq); accounts another writer holds (or collided on
   *    lately) are left.
   * 3. Decide: the caller's pure decision on each. A decision to book other
   *    than exactly one row (without a liquidation record or a client order
   *    id, whose answers need the commit's entry ids) is left, as is a
   *    refusal (`run` confirms it).
   * 4. Commit: every row in one statement, which leaves out the rows the
   *    ledger's keys refuse (another writer booked that seq first, or the
   *    row is already booked): their accounts are left, and `run` finds out
   *    which it was.
   * 5. Apply: the committed rows in a few script calls, each guarded by the
   *    seq it follows, with the accounts' index moves. Cached accounts are
   *    replaced by their new state (uncached ones are not added); an apply
   *    Redis refuses or fails leaves the account to catch-up, as in `run`.
   *
   * A store failure before or at the commit fails the accounts it caught
   * (`failed`, `error`), for the caller to try again once the store is
   * back; a commit past its deadline is applied if it lands later, as `run`
   * does.
   */
  async runMany<R>(accountIds: readonly number[], decide: (s: Snapshot) => Decision<R>): Promise<BulkOutcome> {
    const left: number[] = [];
    const held: number[] = [];
    let release!: () => void;
    const over = new Promise<void>((resolve) => (release = resolve));
    for (const accountId of accountIds) {
      // A repeated id is busy by now: held just above.
      if (this.tails.has(accountId) || this.applying.has(accountId)) left.push(accountId);
      else {
        this.tails.set(accountId, over);
        held.push(accountId);
      }
    }
    try {
      // Shard by shard (in parallel): a shard's accounts are read and applied in calls of their own, against that shard's copy of the marks.
      const outcomes = await Promise.all([...this.deps.keys.groupByShard(held, (id) => id)].map(([shard, ids]) => this.bulk(shard, ids, decide, left)));
      const failed = outcomes.flatMap((o) => o.failed);
      const error = outcomes.find((o) => o.error !== null)?.error ?? null;
      const sum = (f: (o: BulkOutcome) => number) => outcomes.reduce((n, o) => n + f(o), 0);
      return { booked: sum((o) => o.booked), unchanged: sum((o) => o.unchanged), left, failed, error };
    } finally {
      release();
      for (const accountId of held) if (this.tails.get(accountId) === over) this.tails.delete(accountId);
    }
  }

  private async bulk<R>(shard: number, accountIds: readonly number[], decide: (s: Snapshot) => Decision<R>, left: number[]): Promise<BulkOutcome> {
    const { redis, keys, cache, marks, committer, timeoutMs, log } = this.deps;
    if (accountIds.length === 0) return { booked: 0, unchanged: 0, left, failed: [], error: null };
    if (committer.unavailable) return { booked: 0, unchanged: 0, left, failed: [...accountIds], error: new DependencyUnavailable('postgres') };
    // Taken before the read: an entry may be evicted while it is out.
    const cached = accountIds.map((accountId) => cache.get(accountId));
    let peeked: Peeked[];
    let book: Book;
    try {
      const items = accountIds.map((accountId, i) => ({ accountId, cachedSeq: cached[i]?.seq ?? null, clientOrderId: null }));
      peeked = await redisCall(() => peekAccounts(redis, keys, items));
      book = await redisCall(() => marks.at(peeked[0]!.marksEpoch, peeked[0]!.boot, shard));
    } catch (error) {
      return { booked: 0, unchanged: 0, left, failed: [...accountIds], error };
    }
    const decided: Booking<R>[] = [];
    const rows: LedgerRow[] = [];
    let unchanged = 0;
    for (let i = 0; i < accountIds.length; i++) {
      const p = peeked[i]!;
      if (!p.free) {
        left.push(accountIds[i]!);
        continue;
      }
      const account = p.account ?? cached[i]!;
      const snapshot: Snapshot = { account, marks: book.marks, markets: book.markets, marksEpoch: book.epoch, clientOrder: null };
      const decision = decide(snapshot);
      if (decision.kind === 'answer') unchanged++;
      else if (
        decision.kind === 'refuse' ||
        decision.rows.length !== 1 ||
        decision.liquidation !== undefined ||
        decision.marginCall !== undefined ||
        decision.rows[0]!.clientOrderId
      ) {
        // Only a lone row is booked here; a margin call (committed with its row) and the rest go one by one.
        left.push(account.accountId);
      } else {
        decided.push({ snapshot, decision });
        rows.push(decision.rows[0]!);
      }
    }
    const pending = committer.commitUnlessPresent(rows);
    let committed: RowKey[];
    try {
      committed = await withTimeout(pending, timeoutMs, 'ledger commit');
    } catch (error) {
      const failed = decided.map(({ snapshot }) => snapshot.account.accountId);
      for (const accountId of failed) cache.delete(accountId);
      if (error instanceof TimeoutError) {
        // Still pending: whatever it commits is applied when it does, as `run` does.
        void pending.then(
          (late) => this.applyBooked(shard, decided, late),
          () => undefined,
        );
      } else if (error instanceof LedgerUnavailable && error.maybeCommitted) {
        // A connection lost mid-commit may have committed: the watch compares each account with its ledger.
        for (const { snapshot } of decided) this.deps.onLagging?.(snapshot.account.accountId);
      }
      log.warn({ err: error, rows: rows.length }, 'bulk commit failed; its accounts are left');
      const unavailable = error instanceof TimeoutError || error instanceof LedgerUnavailable || isPostgresUnavailable(error);
      return { booked: 0, unchanged, left, failed, error: unavailable ? new DependencyUnavailable('postgres', error) : error };
    }
    const booked = await this.applyBooked(shard, decided, committed);
    for (const { snapshot } of decided) {
      if (booked.has(snapshot.account.accountId)) continue;
      // Refused at the ledger's keys: `run` catches up, or finds it already booked.
      cache.delete(snapshot.account.accountId);
      left.push(snapshot.account.accountId);
    }
    return { booked: booked.size, unchanged, left, failed: [], error: null };
  }

  /**
   * Applies the rows of `decided` that were committed (`committed`), in
   * script calls of APPLY_BATCH accounts sent together; never rejects.
   * Returns the accounts whose row was committed.
   */
  private async applyBooked<R>(shard: number, decided: readonly Booking<R>[], committed: readonly RowKey[]): Promise<Set<number>> {
    const { redis, keys, cache, marks, log } = this.deps;
    const written = new Map<number, number>();
    for (const c of committed) written.set(c.accountId, c.seq);
    const applying: { booking: Booking<R>; request: ApplyRequest; seq: number }[] = [];
    for (const booking of decided) {
      const row = booking.decision.rows[0]!;
      if (written.get(row.accountId) !== row.seq) continue;
      const update = stateUpdate(booking.snapshot.account, booking.decision.after, row);
      applying.push({ booking, request: this.applyRequest(booking.snapshot, booking.decision, update, ''), seq: row.seq });
    }
    const parts: (typeof applying)[] = [];
    for (let i = 0; i < applying.length; i += APPLY_BATCH) parts.push(applying.slice(i, i + APPLY_BATCH));
    await Promise.all(
      parts.map(async (part) => {
        try {
          const results = await redisCall(() => applyAccounts(redis, keys, part.map((a) => a.request)));
          marks.observe(results[0]!.marksEpoch, results[0]!.boot, shard);
          part.forEach(({ booking: { snapshot, decision }, seq }, i) => {
            const accountId = snapshot.account.accountId;
            if (results[i]!.applied) cache.replace({ accountId, seq, balance: decision.after.balance, positions: decision.after.positions });
            else {
              // Redis was not at the seq the row follows: the watch catches the account up.
              cache.delete(accountId);
              this.deps.onLagging?.(accountId);
            }
          });
        } catch (error) {
          log.warn({ err: error, accounts: part.length }, 'committed rows not applied to redis');
          for (const { booking } of part) {
            cache.delete(booking.snapshot.account.accountId);
            this.deps.onLagging?.(booking.snapshot.account.accountId);
          }
        }
      }),
    );
    return new Set(applying.map((a) => a.booking.snapshot.account.accountId));
  }

  /** After rows were refused at the ledger's key: bring Redis level with the ledger before the next attempt. */
  private async catchUpAfter(accountId: number, conflict: StaleState, clientOrderId: string | null): Promise<void> {
    const { redis, sql, keys, risk, riskDefaults, marks, gate, timeoutMs, log } = this.deps;
    this.deps.cache.delete(accountId);
    // A client order id booked before (the trusted path does not read Redis's
    // record of it) is not a collision with another writer: the locked retry
    // reads the record and answers with the first result, or 409.
    if (!conflict.clientOrder) {
      gate.noteShared(accountId);
      // Writers collided here: for a while every writer of this account queues for its lock instead.
      await redisCall(() => markContended(redis, keys, accountId, CONTENDED_MS));
    }
    // Either way Redis may be behind the ledger (the earlier booking not yet applied): replay what it misses.
    const replayed = await catchUp(redis, sql, keys, accountId, conflict.fromSeq, timeoutMs);
    if (conflict.clientOrder && clientOrderId !== null) {
      // PostgreSQL's unique index is what makes the id idempotent: if Redis
      // no longer holds the first result (lost, or never applied), put it
      // back from the ledger so the retry answers with it.
      const first = await postgresCall(() => entryByClientOrder(sql, accountId, clientOrderId), timeoutMs);
      if (first) await redisCall(() => rememberClientOrder(redis, keys, accountId, clientOrderId, storedClientOrder(first)));
    }
    if (replayed.length > 0) {
      await reindexAccount(redis, keys, risk, marks, riskDefaults, accountId, replayed.flatMap((e) => (e.symbol ? [e.symbol] : [])));
      log.warn({ accountId, fromSeq: conflict.fromSeq, replayed: replayed.length }, 'redis was behind the ledger; caught up');
    }
  }
}

/** The Redis update that takes the account from `before` to `after`, in the committed rows' own decimal text. */
function updateOf(before: Snapshot['account'], after: AccountState, entries: readonly LedgerEntry[]): AccountUpdate {
  const withOrder = entries.find((e) => e.kind === 'TRADE' && e.clientOrderId);
  return stateUpdate(before, after, entries[entries.length - 1]!, withOrder ? { id: withOrder.clientOrderId!, stored: storedClientOrder(withOrder) } : undefined);
}

/** The update up to the last row's seq and balance, with the client order's stored result if the rows booked one. */
function stateUpdate(
  before: Snapshot['account'],
  after: AccountState,
  last: Pick<LedgerRow, 'seq' | 'balance'>,
  clientOrder?: AccountUpdate['clientOrder'],
): AccountUpdate {
  const set: { symbol: string; quantity: string; entryPrice: string }[] = [];
  // Formatting a position costs about 0.25 µs (measured), so it is not worth reusing the rows' text for it.
  for (const [symbol, p] of after.positions) {
    if (before.positions.get(symbol) !== p) set.push({ symbol, quantity: str(p.quantity), entryPrice: str(p.entryPrice) });
  }
  const remove: string[] = [];
  for (const symbol of before.positions.keys()) if (!after.positions.has(symbol)) remove.push(symbol);
  return {
    accountId: before.accountId,
    expectedSeq: before.seq,
    seq: last.seq,
    balance: last.balance, // the row's own text of str(after.balance)
    set,
    remove,
    ...(clientOrder ? { clientOrder } : {}),
  };
}

/** The ledger entries of committed rows (the commit supplies ids and timestamps). */
function entriesOf(rows: readonly LedgerRow[], committed: readonly CommittedRow[]): LedgerEntry[] {
  return rows.map((row, i) => entryOf(row, committed[i]!));
}
