/**
 * Everything that changes an account: trades, deposits, withdrawals.
 *
 * Each operation runs under the account gate: read state and marks (one Redis
 * round trip), decide with the pure margin math, commit the ledger row to
 * PostgreSQL (group commit), then apply it to Redis and release the lock (one
 * round trip). PostgreSQL commits first, so a 200 is durable, and a failure
 * before the commit leaves nothing anywhere.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { type Dec, str } from '../domain/decimal.js';
import { DependencyUnavailable, EngineError, accountNotFound, idempotencyConflict, insufficientMargin } from '../domain/errors.js';
import { decideTrade, decideWithdrawal, type MarginRates, type Side } from '../domain/margin.js';
import { accountExists, applyAccount } from '../store/accounts.js';
import { GroupCommitter, LedgerConflict, LedgerUnavailable, type CommittedRow, type LedgerEntry, type LedgerRow } from '../store/ledger.js';
import type { Sql } from '../store/postgres.js';
import type { KeySpace } from '../store/redis.js';
import type { AccountGate, Lease, Snapshot } from './account-gate.js';
import { TimeoutError, isPostgresUnavailable, withTimeout } from './dependencies.js';
import {
  catchUp,
  parseStoredClientOrder,
  tradeFingerprint,
  tradeResultFromEntry,
  updateFromEntry,
  type TradeResult,
} from './ledger-sync.js';

export interface TradeCommand {
  readonly accountId: number;
  readonly symbol: string;
  readonly side: Side;
  readonly quantity: Dec;
  readonly price: Dec;
  readonly clientOrderId: string | null;
}

export interface CashResult {
  readonly account_id: number;
  readonly balance: string;
}

export interface TradingDeps {
  readonly redis: Redis;
  readonly sql: Sql;
  readonly keys: KeySpace;
  readonly gate: AccountGate;
  readonly committer: GroupCommitter;
  readonly rates: MarginRates;
  readonly timeoutMs: number;
  readonly log: Logger;
}

/** Redis was behind PostgreSQL (a writer crashed or stalled between the two): catch up and run again. */
class StaleState extends Error {
  constructor(readonly fromSeq: number) {
    super('account state is behind the ledger');
  }
}

const MAX_ATTEMPTS = 3;

export class TradingService {
  constructor(private readonly deps: TradingDeps) {}

  trade(cmd: TradeCommand): Promise<TradeResult> {
    return this.serialised(cmd.accountId, cmd.clientOrderId, (snapshot, lease) => this.tradeLocked(cmd, snapshot, lease));
  }

  deposit(accountId: number, amount: Dec): Promise<CashResult> {
    return this.serialised(accountId, null, async ({ account }, lease) => {
      const balance = account.balance.plus(amount);
      await this.commit(lease, account.seq, {
        accountId,
        seq: account.seq + 1,
        kind: 'DEPOSIT',
        amount: str(amount),
        balance: str(balance),
      });
      return { account_id: accountId, balance: str(balance) };
    });
  }

  withdraw(accountId: number, amount: Dec): Promise<CashResult> {
    return this.serialised(accountId, null, async ({ account, marks }, lease) => {
      if (!accountExists(account)) throw accountNotFound(accountId);
      const decision = decideWithdrawal(account, amount, marks, this.deps.rates);
      if (!decision.accepted) {
        throw insufficientMargin(
          `withdrawal of ${str(amount)} exceeds the ${str(decision.available)} that can be withdrawn`,
          str(decision.required),
          str(decision.available),
        );
      }
      await this.commit(lease, account.seq, {
        accountId,
        seq: account.seq + 1,
        kind: 'WITHDRAWAL',
        amount: str(amount),
        balance: str(decision.balanceAfter),
      });
      return { account_id: accountId, balance: str(decision.balanceAfter) };
    });
  }

  private async tradeLocked(cmd: TradeCommand, { account, marks, clientOrder }: Snapshot, lease: Lease): Promise<TradeResult> {
    const fingerprint = tradeFingerprint(cmd.symbol, cmd.side, str(cmd.quantity), str(cmd.price));
    if (clientOrder !== null && cmd.clientOrderId !== null) {
      const stored = parseStoredClientOrder(clientOrder);
      if (stored.fp !== fingerprint) throw idempotencyConflict(cmd.clientOrderId);
      return stored.result;
    }
    const fill = { symbol: cmd.symbol, side: cmd.side, quantity: cmd.quantity, price: cmd.price };
    const decision = decideTrade(account, fill, marks, this.deps.rates);
    if (!accountExists(account)) {
      throw insufficientMargin(`account ${cmd.accountId} has no funds`, str(decision.margin.initialMargin), '0');
    }
    if (!decision.accepted) {
      throw insufficientMargin(
        `trade needs initial margin ${str(decision.required)} but equity after it would be ${str(decision.available)}`,
        str(decision.required),
        str(decision.available),
      );
    }
    const position = decision.outcome.position;
    const entry = await this.commit(lease, account.seq, {
      accountId: cmd.accountId,
      seq: account.seq + 1,
      kind: 'TRADE',
      symbol: cmd.symbol,
      side: cmd.side,
      quantity: str(cmd.quantity),
      price: str(cmd.price),
      realisedPnl: str(decision.outcome.realisedPnl),
      clientOrderId: cmd.clientOrderId,
      liquidationId: null,
      positionQuantity: position ? str(position.quantity) : '0',
      positionEntryPrice: position ? str(position.entryPrice) : null,
      equity: str(decision.margin.equity),
      balance: str(decision.outcome.after.balance),
    });
    return tradeResultFromEntry(entry);
  }

  /** Runs under the gate, catching Redis up with the ledger and retrying when it was behind. */
  private async serialised<T>(accountId: number, clientOrderId: string | null, op: (s: Snapshot, l: Lease) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      // During a PostgreSQL outage nothing can be booked: say so before queueing for the lock.
      if (this.deps.committer.unavailable) throw new DependencyUnavailable('postgres');
      try {
        return await this.deps.gate.run(accountId, clientOrderId, op);
      } catch (error) {
        if (!(error instanceof StaleState)) throw error;
        if (attempt >= MAX_ATTEMPTS) {
          throw new EngineError('ACCOUNT_BUSY', `account ${accountId} kept changing under this request; nothing was booked, retry`, {
            account_id: accountId,
          });
        }
        const { redis, sql, keys, timeoutMs, log } = this.deps;
        const replayed = await catchUp(redis, sql, keys, accountId, error.fromSeq, timeoutMs);
        log.warn({ accountId, fromSeq: error.fromSeq, replayed }, 'redis was behind the ledger; caught up');
      }
    }
  }

  /**
   * Commits one ledger row (durably, shared with concurrent requests), then
   * applies it to Redis and releases the lock in one round trip.
   */
  private async commit(lease: Lease, expectedSeq: number, row: LedgerRow): Promise<LedgerEntry> {
    const { redis, keys, committer, timeoutMs, log } = this.deps;
    const pending = committer.submit([row]);
    const applyCommitted = async (committed: CommittedRow[]) => {
      const entry = entryOf(row, committed[0]!);
      await applyAccount(redis, keys, lease.token, updateFromEntry(entry, expectedSeq), expectedSeq === 0);
      return entry;
    };
    let committed: CommittedRow[];
    try {
      committed = await withTimeout(pending, timeoutMs, 'ledger commit');
    } catch (error) {
      if (error instanceof TimeoutError) {
        // Still pending: keep the lock until PostgreSQL decides, then apply or
        // release, so the account never runs ahead of its ledger.
        lease.settled = true;
        pending.then(applyCommitted, () => this.deps.gate.release(row.accountId, lease)).catch((e: unknown) =>
          log.warn({ err: e, accountId: row.accountId }, 'late commit could not be applied to redis; catch-up will'),
        );
      }
      // A connection that died mid-commit may have committed: the lock is
      // released, and if the row did land, the next writer meets it at the
      // ledger's (account_id, seq) key and catches Redis up.
      if (error instanceof LedgerConflict) throw new StaleState(expectedSeq);
      if (error instanceof TimeoutError || error instanceof LedgerUnavailable || isPostgresUnavailable(error)) {
        throw new DependencyUnavailable('postgres', error);
      }
      throw error;
    }
    lease.settled = true;
    try {
      return await applyCommitted(committed);
    } catch (error) {
      // Booked in PostgreSQL, so the answer is success; Redis catches up from
      // the ledger on the account's next operation (its sequence is behind).
      log.warn({ err: error, accountId: row.accountId, seq: row.seq }, 'committed row not applied to redis');
      return entryOf(row, committed[0]!);
    }
  }
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
    createdAt: c.createdAt,
  };
}

