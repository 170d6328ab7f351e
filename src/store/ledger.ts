/**
 * PostgreSQL side of the ledger: the group committer every write goes through,
 * and the reads (history pages, catch-up rows).
 */
import { CircuitBreaker } from './circuit-breaker.js';
import { insertMarginCalls, type MarginCallRecord } from './margin-calls.js';
import type { Sql } from './postgres.js';
import type { Liquidity } from '../domain/fees.js';
import type { Side } from '../domain/margin.js';

export type LedgerKind = 'TRADE' | 'DEPOSIT' | 'WITHDRAWAL' | 'INSURANCE' | 'LIQUIDATION_FEE' | 'FUNDING';

/**
 * One row to write. Decimal values are already plain decimal strings; a
 * column a row does not use (a cash row's trade columns) may be left out.
 */
export interface LedgerRow {
  readonly accountId: number;
  readonly seq: number;
  readonly kind: LedgerKind;
  readonly balance: string;
  readonly symbol?: string | null;
  readonly side?: Side | null;
  readonly quantity?: string | null;
  readonly price?: string | null;
  readonly realisedPnl?: string | null;
  readonly clientOrderId?: string | null;
  readonly liquidationId?: number | null;
  readonly positionQuantity?: string | null;
  readonly positionEntryPrice?: string | null;
  readonly equity?: string | null;
  readonly amount?: string | null;
  /** A trade's fee (negative: a maker rebate), already in `balance`. */
  readonly fee?: string | null;
  readonly liquidity?: Liquidity | null;
  /** A FUNDING row's event. */
  readonly fundingId?: string | null;
  /** The key that caused the row (null with AUTH=off). */
  readonly actor?: string | null;
}

/** A committed row: every column (null where unused), with the id and time the commit gave it. */
export interface LedgerEntry extends Required<LedgerRow> {
  readonly entryId: number;
  readonly createdAt: Date;
}

/** A row's key in the ledger. */
export type RowKey = Pick<LedgerRow, 'accountId' | 'seq'>;

/** What the commit gives a row. */
export type CommittedRow = Pick<LedgerEntry, 'accountId' | 'seq' | 'entryId' | 'createdAt'>;

/**
 * The entry a committed row became. Written out field by field: an object
 * spread over the row cost 4 % of the engine's CPU under the trade load
 * (bench/profile-trades.ts), this literal a fraction of that.
 */
export function entryOf(row: LedgerRow, { entryId, createdAt }: Pick<CommittedRow, 'entryId' | 'createdAt'>): LedgerEntry {
  return {
    entryId,
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
    fee: row.fee ?? null,
    liquidity: row.liquidity ?? null,
    fundingId: row.fundingId ?? null,
    balance: row.balance,
    actor: row.actor ?? null,
    createdAt,
  };
}

/** The rows of one item collided with rows already in the ledger (another writer got there first). */
export class LedgerConflict extends Error {
  constructor(readonly constraint: string) {
    super(`ledger conflict on ${constraint}`);
    this.name = 'LedgerConflict';
  }
}

/** The record of one liquidation, committed with its closing rows. */
export interface LiquidationRecord {
  readonly liquidationId: number;
  readonly accountId: number;
  readonly reason: 'mark_price' | 'trade' | 'withdrawal' | 'market' | 'funding';
  /** 'partial' when positions were left open. */
  readonly mode: 'full' | 'partial';
  readonly triggerSymbol: string | null;
  readonly triggerPrice: string | null;
  readonly equity: string;
  readonly maintenanceMargin: string;
  readonly realisedPnl: string;
  readonly shortfall: string;
  /** The liquidation fee charged (paid into the insurance fund). */
  readonly fee: string;
  /** The parts closed: signed quantity closed, the entry and the mark it closed at. */
  readonly positions: readonly { symbol: string; quantity: string; entry_price: string; mark_price: string }[];
  /** What was left open (partial mode). */
  readonly positionsLeft: readonly { symbol: string; quantity: string; entry_price: string }[];
  readonly firstSeq: number;
  readonly lastSeq: number;
  /** The key of the tick, trade or withdrawal that triggered it. */
  readonly actor: string | null;
}

interface Pending {
  readonly rows: readonly LedgerRow[];
  readonly liquidation: LiquidationRecord | undefined;
  readonly marginCall: MarginCallRecord | undefined;
  readonly resolve: (rows: CommittedRow[]) => void;
  readonly reject: (error: unknown) => void;
}

/** PostgreSQL did not answer (or refused); the rows were never sent, or their outcome is unknown. */
export class LedgerUnavailable extends Error {
  constructor(
    message: string,
    /** False when the rows certainly did not reach PostgreSQL. */
    readonly maybeCommitted: boolean,
    cause?: unknown,
  ) {
    super(message);
    this.name = 'LedgerUnavailable';
    this.cause = cause;
  }
}

export interface GroupCommitterOptions {
  /** Most rows in one INSERT. */
  readonly maxRows: number;
  /** Most commits in flight at once (each on its own pooled connection). */
  readonly maxConcurrent: number;
  /**
   * A commit leaves as soon as this many rows are queued (with a slot free),
   * without waiting for the end of the event loop's turn (0: never early).
   */
  readonly earlyRows: number;
  /** A commit slower than this marks PostgreSQL down; the next batch goes on without it. */
  readonly flushTimeoutMs: number;
  /** Tells a connection failure from a bug. */
  readonly isConnectionError: (error: unknown) => boolean;
  /** Told of every commit that succeeded: its row count and how long it took (for the metrics). */
  readonly onCommit?: (rows: number, seconds: number) => void;
}

/**
 * Group commit: requests that arrive while a commit is in flight wait for it
 * and then share the next one, so under load many trades cost one INSERT and
 * one fsync. Each submitted item (all rows of one operation) commits entirely
 * or not at all.
 *
 * It also holds the engine's circuit breaker for PostgreSQL: after a
 * connection failure or a commit that hangs, new submissions fail at once
 * (nothing sent) until a probe succeeds, so an outage costs callers
 * milliseconds, not timeouts.
 */
export class GroupCommitter {
  private queue: Pending[] = [];
  /** Rows in `queue`. */
  private queuedRows = 0;
  private scheduled = false;
  /** Commits whose outcome is not known yet (a hung one stays here until it settles). */
  private readonly inFlight = new Set<Promise<void>>();
  /** Commits holding a slot: at most `maxConcurrent`; a hung one gives its slot back after the timeout. */
  private slotsUsed = 0;
  private readonly breaker: CircuitBreaker;
  private closed = false;

  constructor(
    private readonly sql: Sql,
    private readonly options: GroupCommitterOptions,
  ) {
    this.breaker = new CircuitBreaker({ probe: () => this.sql`SELECT 1`, probeIntervalMs: 100, probeTimeoutMs: options.flushTimeoutMs });
  }

  /** True while PostgreSQL is known to be unreachable. */
  get unavailable(): boolean {
    return this.breaker.open;
  }

  /**
   * Resolves when the rows are committed. Rejects with LedgerConflict when a
   * row collides, LedgerUnavailable when PostgreSQL is down; may stay pending
   * as long as PostgreSQL hangs (callers bound their own wait).
   */
  submit(rows: readonly LedgerRow[], liquidation?: LiquidationRecord, marginCall?: MarginCallRecord): Promise<CommittedRow[]> {
    if (this.breaker.open || this.closed) {
      return Promise.reject(new LedgerUnavailable('postgres is unavailable', false));
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ rows, liquidation, marginCall, resolve, reject });
      this.queuedRows += rows.length;
      // Under load a wave of requests arrives in one turn of the event loop.
      // Sending its first rows while the rest are still being decided keeps
      // PostgreSQL and the engine busy at once; otherwise the whole wave
      // waits for one commit with the engine idle, and the waves stay in step.
      const { earlyRows, maxConcurrent } = this.options;
      if (earlyRows > 0 && this.queuedRows >= earlyRows && this.slotsUsed < maxConcurrent) this.pump();
      else this.schedule();
    });
  }

  /**
   * Commits `rows` in one statement of their own (not shared with other
   * submissions), leaving out every row that collides with one already in
   * the ledger under any of its keys: `(account_id, seq)` (another writer
   * booked that seq first) or a unique index such as `(funding_id,
   * account_id)` (already booked). Resolves to the rows committed; the rest
   * were not written. For bulk writers whose rows are independent of each
   * other (at most one per account), and whose callers need no entry ids
   * (only the key of each row written is returned). The breaker applies as to `submit`:
   * refused at once while open; a connection failure, or a statement still
   * running after `flushTimeoutMs`, opens it.
   */
  async commitUnlessPresent(rows: readonly LedgerRow[]): Promise<RowKey[]> {
    if (this.breaker.open || this.closed) throw new LedgerUnavailable('postgres is unavailable', false);
    if (rows.length === 0) return [];
    const started = performance.now();
    const timer = setTimeout(() => this.breaker.trip(), this.options.flushTimeoutMs);
    const pending = insertNewRows(this.sql, rows);
    const settled: Promise<void> = pending.then(
      () => undefined,
      () => undefined,
    );
    this.inFlight.add(settled);
    void settled.then(() => {
      clearTimeout(timer);
      this.inFlight.delete(settled);
    });
    try {
      const committed = await pending;
      this.options.onCommit?.(committed.length, (performance.now() - started) / 1000);
      return committed;
    } catch (error) {
      throw this.classify(error);
    }
  }

  /** Resolves once everything submitted so far has been written or has failed. */
  async idle(): Promise<void> {
    while (this.queue.length > 0 || this.inFlight.size > 0 || this.scheduled) {
      await Promise.allSettled([...this.inFlight]);
      if (this.queue.length > 0 || this.scheduled) await new Promise((r) => setImmediate(r));
    }
  }

  /** Stops taking rows (after idle() the queue is empty). */
  async close(): Promise<void> {
    await this.idle();
    this.closed = true;
    await this.breaker.stop();
  }

  private schedule(): void {
    if (this.scheduled) return;
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
  private pump(): void {
    if (this.breaker.open) {
      this.queuedRows = 0;
      for (const p of this.queue.splice(0)) p.reject(new LedgerUnavailable('postgres is unavailable', false));
      return;
    }
    while (this.queue.length > 0 && this.slotsUsed < this.options.maxConcurrent) {
      const batch: Pending[] = [];
      let rowCount = 0;
      while (this.queue.length > 0 && (batch.length === 0 || rowCount + this.queue[0]!.rows.length <= this.options.maxRows)) {
        const next = this.queue.shift()!;
        batch.push(next);
        rowCount += next.rows.length;
        this.queuedRows -= next.rows.length;
      }
      this.slotsUsed++;
      let slotHeld = true;
      const freeSlot = () => {
        if (!slotHeld) return;
        slotHeld = false;
        this.slotsUsed--;
        if (this.queue.length > 0) this.schedule();
      };
      // A hung commit must not hold up the batches behind it: past the
      // timeout PostgreSQL is marked down and the slot is given back.
      const timer = setTimeout(() => {
        this.breaker.trip();
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

  private async commit(batch: Pending[]): Promise<void> {
    try {
      const started = performance.now();
      const committed = await insertBatch(this.sql, batch);
      this.options.onCommit?.(committed.length, (performance.now() - started) / 1000);
      for (const p of batch) p.resolve(pick(committed, p.rows));
      return;
    } catch (error) {
      if (!isUniqueViolation(error) || batch.length === 1) {
        for (const p of batch) p.reject(this.classify(error));
        return;
      }
    }
    // One item collided and the statement rolled back whole: commit the items
    // one by one so only the colliding ones fail.
    for (const p of batch) {
      try {
        p.resolve(await insertBatch(this.sql, [p]));
      } catch (error) {
        p.reject(this.classify(error));
      }
    }
  }

  private classify(error: unknown): unknown {
    if (isUniqueViolation(error)) return new LedgerConflict(constraintOf(error));
    if (this.options.isConnectionError(error)) {
      this.breaker.trip();
      // A connection that failed mid-statement may have committed: postgres.js
      // cannot tell, so neither can we.
      return new LedgerUnavailable('postgres connection failed', true, error);
    }
    return error;
  }
}

function pick(committed: CommittedRow[], rows: readonly LedgerRow[]): CommittedRow[] {
  return rows.map((r) => {
    const c = committed.find((x) => x.accountId === r.accountId && x.seq === r.seq);
    if (!c) throw new Error(`row ${r.accountId}/${r.seq} missing from RETURNING`);
    return c;
  });
}

function isUniqueViolation(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: string }).code === '23505';
}

function constraintOf(error: unknown): string {
  return (error as { constraint_name?: string }).constraint_name ?? 'unique';
}

/** One statement (one commit) for plain rows; a transaction when liquidation records or margin calls come too. */
async function insertBatch(sql: Sql, batch: readonly Pending[]): Promise<CommittedRow[]> {
  const rows = batch.flatMap((p) => p.rows);
  const liquidations: LiquidationRecord[] = [];
  const marginCalls: MarginCallRecord[] = [];
  for (const p of batch) {
    if (p.liquidation) liquidations.push(p.liquidation);
    if (p.marginCall) marginCalls.push(p.marginCall);
  }
  if (liquidations.length === 0 && marginCalls.length === 0) return insertRows(sql, rows);
  return sql.begin(async (tx) => {
    // A transaction's handle runs the same tagged queries; its type just lacks the pool's methods.
    const q = tx as unknown as Sql;
    const committed = await insertRows(q, rows);
    if (liquidations.length > 0) await insertLiquidations(q, liquidations);
    await insertMarginCalls(q, marginCalls);
    return committed;
  }) as Promise<CommittedRow[]>;
}

async function insertLiquidations(sql: Sql, records: readonly LiquidationRecord[]): Promise<void> {
  const col = <T>(f: (r: LiquidationRecord) => T) => records.map(f);
  await sql`
    INSERT INTO liquidations (liquidation_id, account_id, reason, trigger_symbol, trigger_price, equity, maintenance_margin,
                              realised_pnl, shortfall, positions, first_seq, last_seq, actor,
                              mode, fee, positions_left, settled, fund_paid, bad_debt)
    SELECT id, account, reason, symbol, price, equity, mm, pnl, shortfall, positions::jsonb, first_seq, last_seq, actor,
           mode, fee, positions_left::jsonb, shortfall = 0 AND fee = 0,
           CASE WHEN shortfall = 0 AND fee = 0 THEN 0 END, CASE WHEN shortfall = 0 AND fee = 0 THEN 0 END
    FROM unnest(
      ${col((r) => r.liquidationId)}::bigint[], ${col((r) => r.accountId)}::bigint[], ${col((r) => r.reason)}::text[],
      ${col((r) => r.triggerSymbol)}::text[], ${col((r) => r.triggerPrice)}::numeric[], ${col((r) => r.equity)}::numeric[],
      ${col((r) => r.maintenanceMargin)}::numeric[], ${col((r) => r.realisedPnl)}::numeric[], ${col((r) => r.shortfall)}::numeric[],
      ${col((r) => JSON.stringify(r.positions))}::text[], ${col((r) => r.firstSeq)}::bigint[], ${col((r) => r.lastSeq)}::bigint[],
      ${col((r) => r.actor)}::text[], ${col((r) => r.mode)}::text[], ${col((r) => r.fee)}::numeric[],
      ${col((r) => JSON.stringify(r.positionsLeft))}::text[])
      AS t(id, account, reason, symbol, price, equity, mm, pnl, shortfall, positions, first_seq, last_seq, actor, mode, fee, positions_left)`;
}

/** The INSERT of any number of rows as one statement (one array per column, unnested), to be completed by its RETURNING clause. */
function insertOf(sql: Sql, rows: readonly LedgerRow[]) {
  const col = <T>(f: (r: LedgerRow) => T) => rows.map(f);
  return sql`
    INSERT INTO ledger (account_id, seq, kind, symbol, side, quantity, price, realised_pnl, client_order_id,
                        liquidation_id, position_quantity, position_entry_price, equity, amount, balance, actor,
                        fee, liquidity, funding_id)
    SELECT * FROM unnest(
      ${col((r) => r.accountId)}::bigint[], ${col((r) => r.seq)}::bigint[], ${col((r) => r.kind)}::text[],
      ${col((r) => r.symbol ?? null)}::text[], ${col((r) => r.side ?? null)}::text[],
      ${col((r) => r.quantity ?? null)}::numeric[], ${col((r) => r.price ?? null)}::numeric[],
      ${col((r) => r.realisedPnl ?? null)}::numeric[], ${col((r) => r.clientOrderId ?? null)}::text[],
      ${col((r) => r.liquidationId ?? null)}::bigint[], ${col((r) => r.positionQuantity ?? null)}::numeric[],
      ${col((r) => r.positionEntryPrice ?? null)}::numeric[], ${col((r) => r.equity ?? null)}::numeric[],
      ${col((r) => r.amount ?? null)}::numeric[], ${col((r) => r.balance)}::numeric[], ${col((r) => r.actor ?? null)}::text[],
      ${col((r) => r.fee ?? null)}::numeric[], ${col((r) => r.liquidity ?? null)}::text[], ${col((r) => r.fundingId ?? null)}::text[])`;
}

/** One multi-row INSERT (a single statement, so a single commit) for any number of rows. */
async function insertRows(sql: Sql, rows: readonly LedgerRow[]): Promise<CommittedRow[]> {
  const result = await sql<{ account_id: string; seq: string; entry_id: string; created_at: Date }[]>`
    ${insertOf(sql, rows)}
    RETURNING account_id, seq, entry_id, created_at`;
  return result.map((r) => ({
    accountId: Number(r.account_id),
    seq: Number(r.seq),
    entryId: Number(r.entry_id),
    createdAt: r.created_at,
  }));
}

/** As insertRows, leaving out each row that collides with one in the ledger (any unique key); returns the rows written, by their key. */
async function insertNewRows(sql: Sql, rows: readonly LedgerRow[]): Promise<RowKey[]> {
  const result = await sql<{ account_id: string; seq: string }[]>`
    ${insertOf(sql, rows)}
    ON CONFLICT DO NOTHING
    RETURNING account_id, seq`;
  return result.map((r) => ({ accountId: Number(r.account_id), seq: Number(r.seq) }));
}

/** A ledger row as postgres.js returns it (bigint columns as text). */
export interface EntryRecord {
  entry_id: string;
  account_id: string;
  seq: string;
  kind: LedgerKind;
  symbol: string | null;
  side: Side | null;
  quantity: string | null;
  price: string | null;
  realised_pnl: string | null;
  client_order_id: string | null;
  liquidation_id: string | null;
  position_quantity: string | null;
  position_entry_price: string | null;
  equity: string | null;
  amount: string | null;
  fee: string | null;
  liquidity: Liquidity | null;
  funding_id: string | null;
  balance: string;
  actor: string | null;
  created_at: Date;
}

export function toEntry(r: EntryRecord): LedgerEntry {
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
    fee: r.fee,
    liquidity: r.liquidity,
    fundingId: r.funding_id,
    balance: r.balance,
    actor: r.actor,
    createdAt: r.created_at,
  };
}

/** Rows after `afterSeq`, oldest first: what Redis is missing when it fell behind. */
export async function entriesAfter(sql: Sql, accountId: number, afterSeq: number): Promise<LedgerEntry[]> {
  const rows = await sql<EntryRecord[]>`
    SELECT * FROM ledger WHERE account_id = ${accountId} AND seq > ${afterSeq} ORDER BY seq`;
  return rows.map(toEntry);
}

/** The trade booked under a client order id (the ledger's unique index makes it at most one). */
export async function entryByClientOrder(sql: Sql, accountId: number, clientOrderId: string): Promise<LedgerEntry | null> {
  const rows = await sql<EntryRecord[]>`
    SELECT * FROM ledger WHERE account_id = ${accountId} AND client_order_id = ${clientOrderId}`;
  return rows[0] ? toEntry(rows[0]) : null;
}

/** A page of an account's trades, newest first; `beforeSeq` is the cursor. */
export async function tradePage(
  sql: Sql,
  accountId: number,
  limit: number,
  beforeSeq: number | null,
): Promise<{ entries: LedgerEntry[]; nextCursor: number | null }> {
  const rows = await sql<EntryRecord[]>`
    SELECT * FROM ledger
    WHERE account_id = ${accountId} AND kind = 'TRADE' ${beforeSeq === null ? sql`` : sql`AND seq < ${beforeSeq}`}
    ORDER BY seq DESC LIMIT ${limit + 1}`;
  const entries = rows.slice(0, limit).map(toEntry);
  const nextCursor = rows.length > limit ? entries[entries.length - 1]!.seq : null;
  return { entries, nextCursor };
}

/** A ledger row with what it did to the balance: its balance minus the row before's (0 before the first). */
export interface StatementEntry extends LedgerEntry {
  readonly change: string;
}

/**
 * The account's ledger, newest first, optionally only rows of some kinds: every
 * change to its balance or positions (trades, cash, funding, liquidation fees,
 * insurance). Sequences are contiguous per account, so the row before is found
 * by its key, whatever the filter.
 */
export async function statementPage(
  sql: Sql,
  accountId: number,
  limit: number,
  beforeSeq: number | null,
  kinds: readonly LedgerKind[] | null,
): Promise<{ entries: StatementEntry[]; nextCursor: number | null }> {
  const rows = await sql<(EntryRecord & { change: string })[]>`
    SELECT l.*, l.balance - coalesce(p.balance, 0) AS change
    FROM ledger l LEFT JOIN ledger p ON p.account_id = l.account_id AND p.seq = l.seq - 1
    WHERE l.account_id = ${accountId}
      ${beforeSeq === null ? sql`` : sql`AND l.seq < ${beforeSeq}`}
      ${kinds === null ? sql`` : sql`AND l.kind IN ${sql(kinds)}`}
    ORDER BY l.seq DESC LIMIT ${limit + 1}`;
  const entries = rows.slice(0, limit).map((r) => ({ ...toEntry(r), change: r.change }));
  const nextCursor = rows.length > limit ? entries[entries.length - 1]!.seq : null;
  return { entries, nextCursor };
}

/** Hands out liquidation ids from the PostgreSQL sequence, fetched in blocks (one round trip per block). */
export class LiquidationIds {
  private pool: number[] = [];
  private refill: Promise<void> | null = null;

  constructor(
    private readonly sql: Sql,
    private readonly block = 256,
  ) {}

  async next(): Promise<number> {
    while (this.pool.length === 0) {
      this.refill ??= this.sql<{ id: string }[]>`SELECT nextval('liquidation_ids') AS id FROM generate_series(1, ${this.block})`
        .then((rows) => {
          this.pool.push(...rows.map((r) => Number(r.id)));
        })
        .finally(() => {
          this.refill = null;
        });
      await this.refill;
    }
    return this.pool.shift()!;
  }

  /** An id taken but certainly not used: the next liquidation gets it. */
  giveBack(id: number): void {
    this.pool.unshift(id);
  }
}

/** A liquidation as read back: its record's columns, and when it committed. */
export type LiquidationEntry = Pick<
  LiquidationRecord,
  'liquidationId' | 'accountId' | 'reason' | 'mode' | 'equity' | 'maintenanceMargin' | 'realisedPnl' | 'shortfall' | 'fee' | 'positions' | 'positionsLeft' | 'actor'
> & {
  /** The part of the shortfall the insurance fund could not pay (null until the liquidation is settled against the fund). */
  readonly badDebt: string | null;
  readonly createdAt: Date;
};

/** A page of liquidations, newest first (by insertion); `before` is the cursor (a record sequence). */
export async function liquidationPage(
  sql: Sql,
  accountId: number | null,
  limit: number,
  before: number | null,
): Promise<{ liquidations: LiquidationEntry[]; nextCursor: number | null }> {
  const rows = await sql<
    {
      liquidation_id: string;
      record_seq: string;
      account_id: string;
      reason: LiquidationRecord['reason'];
      equity: string;
      maintenance_margin: string;
      realised_pnl: string;
      shortfall: string;
      positions: LiquidationRecord['positions'];
      actor: string | null;
      created_at: Date;
      mode: LiquidationRecord['mode'];
      fee: string;
      bad_debt: string | null;
      positions_left: LiquidationRecord['positionsLeft'];
    }[]
  >`
    SELECT liquidation_id, record_seq, account_id, reason, equity, maintenance_margin, realised_pnl, shortfall, positions, actor, created_at,
           mode, fee, bad_debt, positions_left
    FROM liquidations
    WHERE true ${accountId === null ? sql`` : sql`AND account_id = ${accountId}`}
               ${before === null ? sql`` : sql`AND record_seq < ${before}`}
    ORDER BY record_seq DESC LIMIT ${limit + 1}`;
  const page = rows.slice(0, limit);
  return {
    liquidations: page.map((r) => ({
      liquidationId: Number(r.liquidation_id),
      accountId: Number(r.account_id),
      reason: r.reason,
      equity: r.equity,
      maintenanceMargin: r.maintenance_margin,
      realisedPnl: r.realised_pnl,
      shortfall: r.shortfall,
      positions: r.positions,
      actor: r.actor,
      mode: r.mode,
      fee: r.fee,
      badDebt: r.bad_debt,
      positionsLeft: r.positions_left,
      createdAt: r.created_at,
    })),
    nextCursor: rows.length > limit ? Number(page[page.length - 1]!.record_seq) : null,
  };
}
