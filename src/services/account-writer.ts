/**
 * Writes one operation's ledger rows and brings Redis along: the durable half
 * of every trade, cash movement and liquidation.
 *
 * 1. Commit the rows through the group committer (PostgreSQL first: a 200 is durable).
 * 2. In one Redis round trip: apply the new state (guarded by the sequence it
 *    was computed from), release the lock, move the account's risk-index
 *    entries, bump the global revision, and read the marks' epoch.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { str } from '../domain/decimal.js';
import { DependencyUnavailable, EngineError } from '../domain/errors.js';
import { liquidationThresholds } from '../domain/liquidation.js';
import type { AccountState, MarginRates, MarginTotals, Position } from '../domain/margin.js';
import { applyAccount, markContended, rememberClientOrder, type AccountUpdate, type MarkBook } from '../store/accounts.js';
import {
  GroupCommitter,
  LedgerConflict,
  LedgerUnavailable,
  entryByClientOrder,
  type CommittedRow,
  type LedgerEntry,
  type LedgerRow,
  type LiquidationRecord,
} from '../store/ledger.js';
import type { Sql } from '../store/postgres.js';
import type { KeySpace } from '../store/redis.js';
import { queueIndexUpdate, sidesOf, type RiskKeys } from '../store/risk-index.js';
import type { AccountCache } from './account-cache.js';
import type { AccountGate, GateMode, Lease, Snapshot } from './account-gate.js';
import { TimeoutError, isPostgresUnavailable, postgresCall, redisCall, withTimeout } from './dependencies.js';
import { catchUp, reindexAccount, storedClientOrder } from './ledger-sync.js';

/** Redis was behind PostgreSQL (a writer crashed or stalled between the two): catch up and run again. */
export class StaleState extends Error {
  /** `clientOrder`: what collided was the client order id, booked before; the state itself may be current. */
  constructor(
    readonly fromSeq: number,
    readonly clientOrder = false,
  ) {
    super(clientOrder ? 'client order id already booked' : 'account state is behind the ledger');
  }
}

export interface WriteResult {
  readonly entries: LedgerEntry[];
  /** A mark moved between this operation's read and its write: the account must be re-checked at the new marks. */
  readonly marksMoved: boolean;
  /**
   * Present when the write returned at its commit (a trusted-path lease): the
   * Redis apply still running, resolving to whether a mark moved meanwhile
   * (`marksMoved` is then false). It never rejects.
   */
  readonly applying?: Promise<boolean>;
}

export interface AccountWriterDeps {
  readonly redis: Redis;
  readonly sql: Sql;
  readonly keys: KeySpace;
  readonly risk: RiskKeys;
  readonly gate: AccountGate;
  readonly cache: AccountCache;
  readonly marks: MarkBook;
  readonly committer: GroupCommitter;
  readonly rates: MarginRates;
  readonly timeoutMs: number;
  readonly log: Logger;
  /** Told of an account whose committed rows did not reach Redis, so it is caught up in the background. */
  readonly onLagging?: (accountId: number) => void;
}

const MAX_ATTEMPTS = 4;
/** The ledger's unique index on (account_id, client_order_id). */
const CLIENT_ORDER_CONSTRAINT = 'ledger_client_order_id';
/** How long an account stays on the locked path after writers collided on it. */
const CONTENDED_MS = 2000;

export class AccountWriter {
  constructor(private readonly deps: AccountWriterDeps) {}

  /**
   * Runs `op` under the account gate (`mode` for the first attempt). When the
   * write met an existing row (Redis was behind the ledger, or another engine
   * wrote first), replays the missing rows and runs `op` again on fresh state,
   * under the account's lock.
   */
  async serialised<T>(accountId: number, clientOrderId: string | null, op: (s: Snapshot, l: Lease) => Promise<T>, mode: GateMode = 'locked'): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      // During a PostgreSQL outage nothing can be booked: say so before queueing for the lock.
      if (this.deps.committer.unavailable) throw new DependencyUnavailable('postgres');
      try {
        return await this.deps.gate.run(accountId, clientOrderId, op, attempt === 1 ? mode : 'locked');
      } catch (error) {
        if (!(error instanceof StaleState)) throw error;
        this.deps.cache.delete(accountId);
        // A client order id booked before (the trusted path does not read
        // Redis's record of it) is not a collision with another writer: the
        // locked retry reads the record and answers with the first result, or 409.
        if (!error.clientOrder) {
          this.deps.gate.noteShared(accountId);
          // Writers collided here: for a while every writer of this account queues for its lock instead.
          await redisCall(() => markContended(this.deps.redis, this.deps.keys, accountId, CONTENDED_MS));
        }
        if (attempt >= MAX_ATTEMPTS) {
          throw new EngineError('ACCOUNT_BUSY', `account ${accountId} kept changing under this request; nothing was booked, retry`, {
            account_id: accountId,
          });
        }
        // Either way Redis may be behind the ledger (the earlier booking not yet applied): replay what it misses.
        const { redis, sql, keys, timeoutMs, log } = this.deps;
        const replayed = await catchUp(redis, sql, keys, accountId, error.fromSeq, timeoutMs);
        if (error.clientOrder && clientOrderId !== null) {
          // PostgreSQL's unique index is what makes the id idempotent: if Redis
          // no longer holds the first result (lost, or never applied), put it
          // back from the ledger so the retry answers with it.
          const first = await postgresCall(() => entryByClientOrder(sql, accountId, clientOrderId), timeoutMs);
          if (first) await redisCall(() => rememberClientOrder(redis, keys, accountId, clientOrderId, storedClientOrder(first)));
        }
        if (replayed.length > 0) {
          await reindexAccount(redis, keys, this.deps.risk, this.deps.rates, accountId, replayed.flatMap((e) => (e.symbol ? [e.symbol] : [])));
          log.warn({ accountId, fromSeq: error.fromSeq, replayed: replayed.length }, 'redis was behind the ledger; caught up');
        }
      }
    }
  }

  /**
   * `after` is the account once the rows are applied; `totals`, when the
   * caller has them, are its margin totals at the snapshot's marks (they save
   * valuing it again for the risk index).
   */
  async write(
    lease: Lease,
    snapshot: Snapshot,
    rows: LedgerRow[],
    after: AccountState,
    { liquidation, totals }: { liquidation?: LiquidationRecord; totals?: MarginTotals } = {},
  ): Promise<WriteResult> {
    const { committer, timeoutMs, log } = this.deps;
    const before = snapshot.account;
    const accountId = before.accountId;
    const pending = committer.submit(rows, liquidation);
    let committed: CommittedRow[];
    try {
      committed = await withTimeout(pending, timeoutMs, 'ledger commit');
    } catch (error) {
      this.deps.cache.delete(accountId);
      if (error instanceof TimeoutError) {
        // Still pending: keep the lock until PostgreSQL decides, then apply or
        // release, so the account never runs ahead of its ledger.
        lease.settled = true;
        pending
          .then(
            (late) => this.apply(lease.token, snapshot, entriesOf(rows, late), after, totals),
            () => this.deps.gate.release(accountId, lease),
          )
          .catch((e: unknown) => log.warn({ err: e, accountId }, 'late commit could not be applied to redis; catch-up will'));
      }
      // A connection that died mid-commit may have committed: the lock is
      // released, and if the rows did land, the next writer meets them at the
      // ledger's (account_id, seq) key and catches Redis up.
      if (error instanceof LedgerConflict) throw new StaleState(before.seq, error.constraint === CLIENT_ORDER_CONSTRAINT);
      if (error instanceof TimeoutError || error instanceof LedgerUnavailable || isPostgresUnavailable(error)) {
        throw new DependencyUnavailable('postgres', error);
      }
      throw error;
    }
    lease.settled = true;
    const entries = entriesOf(rows, committed);
    if (!lease.ackAtCommit) return { entries, marksMoved: await this.applyOrLag(lease.token, snapshot, entries, after, totals) };
    // Durable now: answer, and let the apply follow. The account's next
    // operation and this process's reads of it wait for the apply (the gate
    // chains it), so no one here sees the account without this write.
    const applying = this.applyOrLag(lease.token, snapshot, entries, after, totals);
    this.deps.gate.follow(accountId, applying);
    return { entries, marksMoved: false, applying };
  }

  /**
   * The apply of rows already committed: resolves to whether the marks moved
   * meanwhile, and never rejects. The rows are booked in PostgreSQL, so the
   * answer is success whatever Redis does; if the apply fails, Redis catches
   * up from the ledger on the account's next operation (its seq is behind).
   */
  private async applyOrLag(token: string, snapshot: Snapshot, entries: LedgerEntry[], after: AccountState, totals: MarginTotals | undefined): Promise<boolean> {
    try {
      return await this.apply(token, snapshot, entries, after, totals);
    } catch (error) {
      const accountId = snapshot.account.accountId;
      this.deps.cache.delete(accountId);
      this.deps.log.warn({ err: error, accountId, seq: entries[entries.length - 1]!.seq }, 'committed rows not applied to redis');
      this.deps.onLagging?.(accountId);
      // No liquidation re-check now: it would only wait out the same Redis
      // failure. The watch catches the account up and re-indexes it, so the
      // next tick (or operation) checks it.
      return false;
    }
  }

  /** Applies the committed state and moves the index, in one round trip. Returns whether the marks moved meanwhile. */
  private async apply(token: string, snapshot: Snapshot, entries: LedgerEntry[], after: AccountState, totals: MarginTotals | undefined): Promise<boolean> {
    const { redis, keys, risk, rates, cache } = this.deps;
    const before = snapshot.account;
    const last = entries[entries.length - 1]!;
    const set: { symbol: string; quantity: string; entryPrice: string }[] = [];
    for (const [symbol, p] of after.positions) if (before.positions.get(symbol) !== p) set.push(positionText(symbol, p, entries));
    const remove: string[] = [];
    for (const symbol of before.positions.keys()) if (!after.positions.has(symbol)) remove.push(symbol);
    const tradeWithOrder = entries.find((e) => e.kind === 'TRADE' && e.clientOrderId);
    const update: AccountUpdate = {
      accountId: before.accountId,
      expectedSeq: before.seq,
      seq: last.seq,
      balance: last.balance, // the row's own text of it: str(after.balance)
      set,
      remove,
      ...(tradeWithOrder ? { clientOrder: { id: tradeWithOrder.clientOrderId!, stored: storedClientOrder(tradeWithOrder) } } : {}),
    };
    const thresholds = liquidationThresholds(after, snapshot.marks, rates, totals);
    const result = await applyAccount(redis, keys, token, update, before.seq === 0, (w) =>
      queueIndexUpdate(w, risk, before.accountId, before.seq === 0 ? null : sidesOf(before.positions), thresholds),
    );
    // The reply read the marks' epoch and boot marker: it keeps the gate's trusted path open, or closes it.
    this.deps.marks.observe(result.marksEpoch, result.boot);
    if (result.applied) cache.set({ accountId: before.accountId, seq: last.seq, balance: after.balance, positions: after.positions });
    else {
      // Redis was not at the seq this row follows (it lost its state, or lags
      // the ledger): the watch checks and catches the account up.
      cache.delete(before.accountId);
      this.deps.onLagging?.(before.accountId);
    }
    return result.marksEpoch !== snapshot.marksEpoch;
  }
}

/** The ledger entries of committed rows (the commit supplies ids and timestamps). */
function entriesOf(rows: readonly LedgerRow[], committed: readonly CommittedRow[]): LedgerEntry[] {
  return rows.map((row, i) => entryOf(row, committed[i]!));
}

/**
 * A changed position as text for Redis: the trade row that left it so
 * already carries it (str of the same decimals), otherwise it is formatted.
 */
function positionText(symbol: string, p: Position, entries: readonly LedgerEntry[]): { symbol: string; quantity: string; entryPrice: string } {
  for (let i = entries.length - 1; i >= 0; i--) {
    const e = entries[i]!;
    if (e.symbol !== symbol) continue;
    if (e.positionQuantity !== null && e.positionEntryPrice !== null) return { symbol, quantity: e.positionQuantity, entryPrice: e.positionEntryPrice };
    break;
  }
  return { symbol, quantity: str(p.quantity), entryPrice: str(p.entryPrice) };
}

function entryOf(row: LedgerRow, c: CommittedRow): LedgerEntry {
  return {
    entryId: c.entryId,
    accountId: row.accountId,
    seq: row.seq,
    kind: row.kind,
    symbol: row.symbol ?? null,
    side: row.side ?? null,
    quantity: row.quantity ?? null,
    price: row.price ?? null,
    realisedPnl: row.realisedPnl ?? null,
    clientOrderId: row.clientOrderId ?? null,
    liquidationId: row.liquidationId ?? null,
    positionQuantity: row.positionQuantity ?? null,
    positionEntryPrice: row.positionEntryPrice ?? null,
    equity: row.equity ?? null,
    amount: row.amount ?? null,
    balance: row.balance,
    actor: row.actor ?? null,
    createdAt: c.createdAt,
  };
}
