/** The rows of one item collided with rows already in the ledger (another writer got there first). */
export class LedgerConflict extends Error {
    constraint;
    constructor(constraint) {
        super(`ledger conflict on ${constraint}`);
        this.constraint = constraint;
        this.name = 'LedgerConflict';
    }
}
/** PostgreSQL did not answer (or refused); the rows were never sent, or their outcome is unknown. */
export class LedgerUnavailable extends Error {
    maybeCommitted;
    constructor(message, 
    /** False when the rows certainly did not reach PostgreSQL. */
    maybeCommitted, cause) {
        super(message);
        this.maybeCommitted = maybeCommitted;
        this.name = 'LedgerUnavailable';
        this.cause = cause;
    }
}
/**
 * Group commit: requests that arrive while a commit is in flight wait for it
 * and then share the next one, so under load many trades cost one INSERT and
 * one fsync. Each submitted item (all rows of one operation) commits entirely
 * or not at all.
 *
 * It is also the engine's circuit breaker for PostgreSQL: after a connection
 * failure or a commit that hangs, new submissions fail at once (nothing sent)
 * until a probe succeeds, so an outage costs callers milliseconds, not timeouts.
 */
export class GroupCommitter {
    sql;
    options;
    queue = [];
    /** Rows in `queue`. */
    queuedRows = 0;
    scheduled = false;
    /** Commits whose outcome is not known yet (a hung one stays here until it settles). */
    inFlight = new Set();
    /** Commits holding a slot: at most `maxConcurrent`; a hung one gives its slot back after the timeout. */
    slotsUsed = 0;
    down = false;
    probing = null;
    closed = false;
    constructor(sql, options) {
        this.sql = sql;
        this.options = options;
    }
    /** True while PostgreSQL is known to be unreachable. */
    get unavailable() {
        return this.down;
    }
    /**
     * Resolves when the rows are committed. Rejects with LedgerConflict when a
     * row collides, LedgerUnavailable when PostgreSQL is down; may stay pending
     * as long as PostgreSQL hangs (callers bound their own wait).
     */
    submit(rows, liquidation) {
        if (this.down || this.closed) {
            return Promise.reject(new LedgerUnavailable('postgres is unavailable', false));
        }
        return new Promise((resolve, reject) => {
            this.queue.push({ rows, liquidation, resolve, reject });
            this.queuedRows += rows.length;
            // Under load a wave of requests arrives in one turn of the event loop.
            // Sending its first rows while the rest are still being decided keeps
            // PostgreSQL and the engine busy at once; otherwise the whole wave
            // waits for one commit with the engine idle, and the waves stay in step.
            const { earlyRows, maxConcurrent } = this.options;
            if (earlyRows > 0 && this.queuedRows >= earlyRows && this.slotsUsed < maxConcurrent)
                this.pump();
            else
                this.schedule();
        });
    }
    /** Resolves once everything submitted so far has been written or has failed. */
    async idle() {
        while (this.queue.length > 0 || this.inFlight.size > 0 || this.scheduled) {
            await Promise.allSettled([...this.inFlight]);
            if (this.queue.length > 0 || this.scheduled)
                await new Promise((r) => setImmediate(r));
        }
    }
    /** Stops taking rows (after idle() the queue is empty). */
    async close() {
        await this.idle();
        this.closed = true;
        await this.probing;
    }
    schedule() {
        if (this.scheduled)
            return;
        this.scheduled = true;
        // Let the current tick's submissions join the batch.
        setImmediate(() => {
            this.scheduled = false;
            this.pump();
        });
    }
    /**
     * Starts commits while slots are free. Under load every slot is busy, the
     * queue grows, and the next commit takes it all: batches grow with load.
     * A few commits in flight at once keep the disk's fsyncs overlapping.
     */
    pump() {
        if (this.down) {
            this.queuedRows = 0;
            for (const p of this.queue.splice(0))
                p.reject(new LedgerUnavailable('postgres is unavailable', false));
            return;
        }
        while (this.queue.length > 0 && this.slotsUsed < this.options.maxConcurrent) {
            const batch = [];
            let rowCount = 0;
            while (this.queue.length > 0 && (batch.length === 0 || rowCount + this.queue[0].rows.length <= this.options.maxRows)) {
                const next = this.queue.shift();
                batch.push(next);
                rowCount += next.rows.length;
                this.queuedRows -= next.rows.length;
            }
            this.slotsUsed++;
            let slotHeld = true;
            const freeSlot = () => {
                if (!slotHeld)
                    return;
                slotHeld = false;
                this.slotsUsed--;
                if (this.queue.length > 0)
                    this.schedule();
            };
            // A hung commit must not hold up the batches behind it: past the
            // timeout PostgreSQL is marked down and the slot is given back.
            const timer = setTimeout(() => {
                this.markDown();
                freeSlot();
            }, this.options.flushTimeoutMs);
            const commit = this.commit(batch).finally(() => {
                clearTimeout(timer);
                this.inFlight.delete(commit);
                freeSlot();
            });
            this.inFlight.add(commit);
        }
    }
    async commit(batch) {
        try {
            const committed = await insertBatch(this.sql, batch);
            for (const p of batch)
                p.resolve(pick(committed, p.rows));
            return;
        }
        catch (error) {
            if (!isUniqueViolation(error) || batch.length === 1) {
                for (const p of batch)
                    p.reject(this.classify(error));
                return;
            }
        }
        // One item collided and the statement rolled back whole: commit the items
        // one by one so only the colliding ones fail.
        for (const p of batch) {
            try {
                p.resolve(await insertBatch(this.sql, [p]));
            }
            catch (error) {
                p.reject(this.classify(error));
            }
        }
    }
    classify(error) {
        if (isUniqueViolation(error))
            return new LedgerConflict(constraintOf(error));
        if (this.options.isConnectionError(error)) {
            this.markDown();
            // A connection that failed mid-statement may have committed: postgres.js
            // cannot tell, so neither can we.
            return new LedgerUnavailable('postgres connection failed', true, error);
        }
        return error;
    }
    markDown() {
        this.down = true;
        this.probing ??= this.probe();
    }
    /** Pings until PostgreSQL answers again, then lets submissions through. */
    async probe() {
        try {
            while (this.down && !this.closed) {
                await new Promise((r) => setTimeout(r, 100));
                try {
                    let timer;
                    await Promise.race([
                        this.sql `SELECT 1`,
                        new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('probe timeout')), this.options.flushTimeoutMs))),
                    ]).finally(() => clearTimeout(timer));
                    this.down = false;
                }
                catch {
                    // still down
                }
            }
        }
        finally {
            this.probing = null;
        }
    }
}
function pick(committed, rows) {
    return rows.map((r) => {
        const c = committed.find((x) => x.accountId === r.accountId && x.seq === r.seq);
        if (!c)
            throw new Error(`row ${r.accountId}/${r.seq} missing from RETURNING`);
        return c;
    });
}
function isUniqueViolation(error) {
    return typeof error === 'object' && error !== null && error.code === '23505';
}
function constraintOf(error) {
    return error.constraint_name ?? 'unique';
}
/** One statement (one commit) for plain rows; a transaction when liquidation records come too. */
async function insertBatch(sql, batch) {
    const rows = batch.flatMap((p) => p.rows);
    const liquidations = batch.flatMap((p) => (p.liquidation ? [p.liquidation] : []));
    if (liquidations.length === 0)
        return insertRows(sql, rows);
    return sql.begin(async (tx) => {
        // A transaction's handle runs the same tagged queries; its type just lacks the pool's methods.
        const q = tx;
        const committed = await insertRows(q, rows);
        await insertLiquidations(q, liquidations);
        return committed;
    });
}
async function insertLiquidations(sql, records) {
    const col = (f) => records.map(f);
    await sql `
    INSERT INTO liquidations (liquidation_id, account_id, reason, trigger_symbol, trigger_price, equity, maintenance_margin,
                              realised_pnl, shortfall, positions, first_seq, last_seq)
    SELECT id, account, reason, symbol, price, equity, mm, pnl, shortfall, positions::jsonb, first_seq, last_seq
    FROM unnest(
      ${col((r) => r.liquidationId)}::bigint[], ${col((r) => r.accountId)}::bigint[], ${col((r) => r.reason)}::text[],
      ${col((r) => r.triggerSymbol)}::text[], ${col((r) => r.triggerPrice)}::numeric[], ${col((r) => r.equity)}::numeric[],
      ${col((r) => r.maintenanceMargin)}::numeric[], ${col((r) => r.realisedPnl)}::numeric[], ${col((r) => r.shortfall)}::numeric[],
      ${col((r) => JSON.stringify(r.positions))}::text[], ${col((r) => r.firstSeq)}::bigint[], ${col((r) => r.lastSeq)}::bigint[])
      AS t(id, account, reason, symbol, price, equity, mm, pnl, shortfall, positions, first_seq, last_seq)`;
}
/** One multi-row INSERT (a single statement, so a single commit) for any number of rows. */
async function insertRows(sql, rows) {
    const col = (f) => rows.map(f);
    const result = await sql `
    INSERT INTO ledger (account_id, seq, kind, symbol, side, quantity, price, realised_pnl, client_order_id,
                        liquidation_id, position_quantity, position_entry_price, equity, amount, balance)
    SELECT * FROM unnest(
      ${col((r) => r.accountId)}::bigint[], ${col((r) => r.seq)}::bigint[], ${col((r) => r.kind)}::text[],
      ${col((r) => r.symbol ?? null)}::text[], ${col((r) => r.side ?? null)}::text[],
      ${col((r) => r.quantity ?? null)}::numeric[], ${col((r) => r.price ?? null)}::numeric[],
      ${col((r) => r.realisedPnl ?? null)}::numeric[], ${col((r) => r.clientOrderId ?? null)}::text[],
      ${col((r) => r.liquidationId ?? null)}::bigint[], ${col((r) => r.positionQuantity ?? null)}::numeric[],
      ${col((r) => r.positionEntryPrice ?? null)}::numeric[], ${col((r) => r.equity ?? null)}::numeric[],
      ${col((r) => r.amount ?? null)}::numeric[], ${col((r) => r.balance)}::numeric[])
    RETURNING account_id, seq, entry_id, created_at`;
    return result.map((r) => ({
        accountId: Number(r.account_id),
        seq: Number(r.seq),
        entryId: Number(r.entry_id),
        createdAt: r.created_at,
    }));
}
export function toEntry(r) {
    return {
        entryId: Number(r.entry_id),
        accountId: Number(r.account_id),
        seq: Number(r.seq),
        kind: r.kind,
        symbol: r.symbol,
        side: r.side,
        quantity: r.quantity,
        price: r.price,
        realisedPnl: r.realised_pnl,
        clientOrderId: r.client_order_id,
        liquidationId: r.liquidation_id === null ? null : Number(r.liquidation_id),
        positionQuantity: r.position_quantity,
        positionEntryPrice: r.position_entry_price,
        equity: r.equity,
        amount: r.amount,
        balance: r.balance,
        createdAt: r.created_at,
    };
}
/** Rows after `afterSeq`, oldest first: what Redis is missing when it fell behind. */
export async function entriesAfter(sql, accountId, afterSeq) {
    const rows = await sql `
    SELECT * FROM ledger WHERE account_id = ${accountId} AND seq > ${afterSeq} ORDER BY seq`;
    return rows.map(toEntry);
}
/** The trade booked under a client order id (the ledger's unique index makes it at most one). */
export async function entryByClientOrder(sql, accountId, clientOrderId) {
    const rows = await sql `
    SELECT * FROM ledger WHERE account_id = ${accountId} AND client_order_id = ${clientOrderId}`;
    return rows[0] ? toEntry(rows[0]) : null;
}
/** A page of an account's trades, newest first; `beforeSeq` is the cursor. */
export async function tradePage(sql, accountId, limit, beforeSeq) {
    const rows = await sql `
    SELECT * FROM ledger
    WHERE account_id = ${accountId} AND kind = 'TRADE' ${beforeSeq === null ? sql `` : sql `AND seq < ${beforeSeq}`}
    ORDER BY seq DESC LIMIT ${limit + 1}`;
    const entries = rows.slice(0, limit).map(toEntry);
    const nextCursor = rows.length > limit ? entries[entries.length - 1].seq : null;
    return { entries, nextCursor };
}
/** Hands out liquidation ids from the PostgreSQL sequence, fetched in blocks (one round trip per block). */
export class LiquidationIds {
    sql;
    block;
    pool = [];
    refill = null;
    constructor(sql, block = 256) {
        this.sql = sql;
        this.block = block;
    }
    async next() {
        while (this.pool.length === 0) {
            this.refill ??= this.sql `SELECT nextval('liquidation_ids') AS id FROM generate_series(1, ${this.block})`
                .then((rows) => {
                this.pool.push(...rows.map((r) => Number(r.id)));
            })
                .finally(() => {
                this.refill = null;
            });
            await this.refill;
        }
        return this.pool.shift();
    }
}
/** A page of liquidations, newest first (by insertion); `before` is the cursor (a record sequence). */
export async function liquidationPage(sql, accountId, limit, before) {
    const rows = await sql `
    SELECT liquidation_id, record_seq, account_id, reason, equity, maintenance_margin, realised_pnl, shortfall, positions, created_at
    FROM liquidations
    WHERE true ${accountId === null ? sql `` : sql `AND account_id = ${accountId}`}
               ${before === null ? sql `` : sql `AND record_seq < ${before}`}
    ORDER BY record_seq DESC LIMIT ${limit + 1}`;
    const page = rows.slice(0, limit);
    return {
        liquidations: page.map((r) => ({
            liquidation_id: Number(r.liquidation_id),
            account_id: Number(r.account_id),
            reason: r.reason,
            equity: r.equity,
            maintenance_margin: r.maintenance_margin,
            realised_pnl: r.realised_pnl,
            shortfall: r.shortfall,
            positions: r.positions,
            created_at: r.created_at.toISOString(),
        })),
        nextCursor: rows.length > limit ? Number(page[page.length - 1].record_seq) : null,
    };
}
//# sourceMappingURL=ledger.js.map