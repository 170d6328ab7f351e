import { str } from '../domain/decimal.js';
import { DependencyUnavailable, EngineError } from '../domain/errors.js';
import { liquidationThresholds } from '../domain/liquidation.js';
import { applyAccount, markContended, rememberClientOrder } from '../store/accounts.js';
import { LedgerConflict, LedgerUnavailable, entryByClientOrder, } from '../store/ledger.js';
import { queueIndexUpdate, sidesOf } from '../store/risk-index.js';
import { TimeoutError, isPostgresUnavailable, postgresCall, redisCall, withTimeout } from './dependencies.js';
import { catchUp, reindexAccount, storedClientOrder } from './ledger-sync.js';
/** Redis was behind PostgreSQL (a writer crashed or stalled between the two): catch up and run again. */
export class StaleState extends Error {
    fromSeq;
    clientOrder;
    /** `clientOrder`: what collided was the client order id, booked before; the state itself may be current. */
    constructor(fromSeq, clientOrder = false) {
        super(clientOrder ? 'client order id already booked' : 'account state is behind the ledger');
        this.fromSeq = fromSeq;
        this.clientOrder = clientOrder;
    }
}
const MAX_ATTEMPTS = 4;
/** The ledger's unique index on (account_id, client_order_id). */
const CLIENT_ORDER_CONSTRAINT = 'ledger_client_order_id';
/** How long an account stays on the locked path after writers collided on it. */
const CONTENDED_MS = 2000;
export class AccountWriter {
    deps;
    constructor(deps) {
        this.deps = deps;
    }
    /**
     * Runs `op` under the account gate (`mode` for the first attempt). When the
     * write met an existing row (Redis was behind the ledger, or another engine
     * wrote first), replays the missing rows and runs `op` again on fresh state,
     * under the account's lock.
     */
    async serialised(accountId, clientOrderId, op, mode = 'locked') {
        for (let attempt = 1;; attempt++) {
            // During a PostgreSQL outage nothing can be booked: say so before queueing for the lock.
            if (this.deps.committer.unavailable)
                throw new DependencyUnavailable('postgres');
            try {
                return await this.deps.gate.run(accountId, clientOrderId, op, attempt === 1 ? mode : 'locked');
            }
            catch (error) {
                if (!(error instanceof StaleState))
                    throw error;
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
                    if (first)
                        await redisCall(() => rememberClientOrder(redis, keys, accountId, clientOrderId, storedClientOrder(first)));
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
    async write(lease, snapshot, rows, after, { liquidation, totals } = {}) {
        const { committer, timeoutMs, log } = this.deps;
        const before = snapshot.account;
        const accountId = before.accountId;
        const pending = committer.submit(rows, liquidation);
        const entriesOf = (committed) => rows.map((row, i) => entryOf(row, committed[i]));
        const applyCommitted = async (committed) => {
            const entries = entriesOf(committed);
            return { entries, marksMoved: await this.apply(lease.token, snapshot, entries, after, totals) };
        };
        let committed;
        try {
            committed = await withTimeout(pending, timeoutMs, 'ledger commit');
        }
        catch (error) {
            this.deps.cache.delete(accountId);
            if (error instanceof TimeoutError) {
                // Still pending: keep the lock until PostgreSQL decides, then apply or
                // release, so the account never runs ahead of its ledger.
                lease.settled = true;
                pending.then(applyCommitted, () => this.deps.gate.release(accountId, lease)).catch((e) => log.warn({ err: e, accountId }, 'late commit could not be applied to redis; catch-up will'));
            }
            // A connection that died mid-commit may have committed: the lock is
            // released, and if the rows did land, the next writer meets them at the
            // ledger's (account_id, seq) key and catches Redis up.
            if (error instanceof LedgerConflict)
                throw new StaleState(before.seq, error.constraint === CLIENT_ORDER_CONSTRAINT);
            if (error instanceof TimeoutError || error instanceof LedgerUnavailable || isPostgresUnavailable(error)) {
                throw new DependencyUnavailable('postgres', error);
            }
            throw error;
        }
        lease.settled = true;
        const applyOrLag = async () => {
            try {
                return await applyCommitted(committed);
            }
            catch (error) {
                this.deps.cache.delete(accountId);
                // Booked in PostgreSQL, so the answer is success; Redis catches up from
                // the ledger on the account's next operation (its sequence is behind).
                log.warn({ err: error, accountId, seq: rows[rows.length - 1].seq }, 'committed rows not applied to redis');
                this.deps.onLagging?.(accountId);
                // No liquidation re-check now: it would only wait out the same Redis
                // failure. The watch catches the account up and re-indexes it, so the
                // next tick (or operation) checks it.
                return { entries: entriesOf(committed), marksMoved: false };
            }
        };
        if (!lease.ackAtCommit)
            return applyOrLag();
        // Durable now: answer, and let the apply follow. The account's next
        // operation and this process's reads of it wait for the apply (the gate
        // chains it), so no one here sees the account without this write.
        const applying = applyOrLag().then((r) => r.marksMoved);
        this.deps.gate.follow(accountId, applying);
        return { entries: entriesOf(committed), marksMoved: false, applying };
    }
    /** Applies the committed state and moves the index, in one round trip. Returns whether the marks moved meanwhile. */
    async apply(token, snapshot, entries, after, totals) {
        const { redis, keys, risk, rates, cache } = this.deps;
        const before = snapshot.account;
        const last = entries[entries.length - 1];
        const tradeWithOrder = entries.find((e) => e.kind === 'TRADE' && e.clientOrderId);
        const update = {
            accountId: before.accountId,
            expectedSeq: before.seq,
            seq: last.seq,
            balance: last.balance, // the row's own text of it: str(after.balance)
            set: [...after.positions].filter(([symbol, p]) => before.positions.get(symbol) !== p).map(([symbol, p]) => positionText(symbol, p, entries)),
            remove: [...before.positions.keys()].filter((symbol) => !after.positions.has(symbol)),
            ...(tradeWithOrder ? { clientOrder: { id: tradeWithOrder.clientOrderId, stored: storedClientOrder(tradeWithOrder) } } : {}),
        };
        const thresholds = liquidationThresholds(after, snapshot.marks, rates, totals);
        const result = await applyAccount(redis, keys, token, update, before.seq === 0, (w) => queueIndexUpdate(w, risk, before.accountId, before.seq === 0 ? null : sidesOf(before.positions), thresholds));
        // The reply read the marks' epoch and boot marker: it keeps the gate's trusted path open, or closes it.
        this.deps.marks.observe(result.marksEpoch, result.boot);
        if (result.applied)
            cache.set({ accountId: before.accountId, seq: last.seq, balance: after.balance, positions: after.positions });
        else {
            // Redis was not at the seq this row follows (it lost its state, or lags
            // the ledger): the watch checks and catches the account up.
            cache.delete(before.accountId);
            this.deps.onLagging?.(before.accountId);
        }
        return result.marksEpoch !== snapshot.marksEpoch;
    }
}
/**
 * A changed position as text for Redis: the trade row that left it so
 * already carries it (str of the same decimals), otherwise it is formatted.
 */
function positionText(symbol, p, entries) {
    for (let i = entries.length - 1; i >= 0; i--) {
        const e = entries[i];
        if (e.symbol !== symbol)
            continue;
        if (e.positionQuantity !== null && e.positionEntryPrice !== null)
            return { symbol, quantity: e.positionQuantity, entryPrice: e.positionEntryPrice };
        break;
    }
    return { symbol, quantity: str(p.quantity), entryPrice: str(p.entryPrice) };
}
function entryOf(row, c) {
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
//# sourceMappingURL=account-writer.js.map