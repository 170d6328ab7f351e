/**
 * The live event stream behind GET /events: trades, liquidations, margin
 * calls, marks and market changes, from every engine process (PostgreSQL is the carrier:
 * each process reads what any process committed; see store/events.ts).
 *
 * One reader per process polls PostgreSQL while anyone is subscribed and
 * keeps the latest events in a bounded ring, each formatted once. A
 * subscriber pulls at its own pace: from the ring when its position is in
 * it, otherwise from PostgreSQL in pages (a resume from an old id, or a
 * consumer that fell behind the ring). Nobody waits for a subscriber, and a
 * subscriber holds at most one page, so a slow consumer costs its own
 * socket's buffer and nothing else (the route drops one that stops reading).
 */
import type { Logger } from 'pino';
import { eventsAfter, formatPosition, latestPosition, type EventPosition, type StoredEvent } from '../store/events.js';
import type { Sql } from '../store/postgres.js';
import { postgresCall } from './dependencies.js';

export const EVENT_TYPES = ['trade', 'liquidation', 'margin_call', 'mark', 'market', 'funding'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface StreamEvent {
  readonly position: EventPosition;
  readonly type: EventType;
  /** The account it is about (null: a market-wide event). */
  readonly accountId: number | null;
  /** When it committed (PostgreSQL's clock). */
  readonly createdAt: Date;
  /** The event as sent: `id:`, `event:` and `data:` lines and the blank line. */
  readonly text: string;
}

export interface EventFilter {
  /** null: every type. */
  readonly types: ReadonlySet<EventType> | null;
  /** Accounts whose trades, liquidations and margin calls to send (null: every account); market-wide events always pass. */
  readonly accounts: ReadonlySet<number> | null;
}

export interface EventHubOptions {
  /** How often the reader looks for new events while anyone is subscribed. */
  readonly pollMs?: number;
  /** Events kept in memory for subscribers that are close behind. */
  readonly ringSize?: number;
  /** Events per read, from PostgreSQL or the ring. */
  readonly pageSize?: number;
  readonly timeoutMs: number;
  readonly log: Logger;
}

/** Positions in stream order: (transaction id, table, row id), each compared as a number. */
export function comparePositions(a: EventPosition, b: EventPosition): number {
  return compareDigits(a.xid, b.xid) || a.table - b.table || compareDigits(a.id, b.id);
}

/** Two non-negative integers written in decimal without leading zeros. Not money. */
const compareDigits = (a: string, b: string) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);

export function toStreamEvent(e: StoredEvent): StreamEvent {
  const createdAt = e.createdAt.toISOString();
  let type: EventType;
  let accountId: number | null = null;
  let data: unknown;
  if (e.type === 'trade') {
    type = 'trade';
    accountId = Number(e.accountId);
    data = {
      trade_id: Number(e.tradeId),
      account_id: accountId,
      symbol: e.symbol,
      side: e.side,
      quantity: e.quantity,
      price: e.price,
      realised_pnl: e.realisedPnl,
      fee: e.fee,
      liquidity: e.liquidity,
      liquidation_id: e.liquidationId === null ? null : Number(e.liquidationId),
      created_at: createdAt,
    };
  } else if (e.type === 'liquidation') {
    type = 'liquidation';
    accountId = Number(e.accountId);
    data = {
      liquidation_id: Number(e.liquidationId),
      account_id: accountId,
      reason: e.reason,
      mode: e.mode,
      equity: e.equity,
      maintenance_margin: e.maintenanceMargin,
      fee: e.fee,
      shortfall: e.shortfall,
      positions: e.positions,
      positions_left: e.positionsLeft,
      created_at: createdAt,
    };
  } else if (e.type === 'margin_call') {
    type = 'margin_call';
    accountId = Number(e.accountId);
    data = {
      margin_call_id: Number(e.marginCallId),
      account_id: accountId,
      status: e.status,
      previous_status: e.previousStatus,
      equity: e.equity,
      initial_margin: e.initialMargin,
      maintenance_margin: e.maintenanceMargin,
      marks: e.marks,
      cause: e.cause,
      symbol: e.symbol,
      funding_id: e.fundingId,
      created_at: createdAt,
    };
  } else if (e.kind === 'mark') {
    type = 'mark';
    data = { symbol: e.symbol, price: e.price, previous_price: e.previousPrice, created_at: createdAt };
  } else if (e.kind === 'funding') {
    // The event's summary, recorded in its history row when it finished.
    type = 'funding';
    const c = (e.changes ?? {}) as Record<string, unknown>;
    data = {
      symbol: e.symbol,
      funding_id: c.funding_id,
      rate: c.rate,
      mark_price: e.price,
      accounts: c.accounts,
      paid: c.paid,
      received: c.received,
      liquidated: c.liquidated,
      created_at: createdAt,
    };
  } else {
    type = 'market';
    data = { symbol: e.symbol, type: e.kind, changes: e.changes, created_at: createdAt };
  }
  return { position: e.position, type, accountId, createdAt: e.createdAt, text: `id: ${formatPosition(e.position)}\nevent: ${type}\ndata: ${JSON.stringify(data)}\n\n` };
}

export const passes = (f: EventFilter, e: StreamEvent) =>
  (f.types === null || f.types.has(e.type)) && (f.accounts === null || e.accountId === null || f.accounts.has(e.accountId));

export class EventHub {
  private ring: StreamEvent[] = [];
  /** Where the ring starts: it holds every event after this position, up to `head`. */
  private ringStart: EventPosition | null = null;
  /** The newest position read. */
  private head: EventPosition | null = null;
  /** Open subscriptions in this process. */
  subscribers = 0;
  private running: Promise<void> | null = null;
  private waiters = new Set<() => void>();
  private closed = false;
  /** Ends the reader's wait before its next poll. */
  private wakeReader: (() => void) | null = null;
  /** A commit was poked while the reader's query was in flight: it may have missed it, so it reads again at once. */
  private poked = false;
  private readonly pollMs: number;
  private readonly ringSize: number;
  readonly pageSize: number;

  constructor(
    private readonly sql: Sql,
    private readonly options: EventHubOptions,
  ) {
    this.pollMs = options.pollMs ?? 20;
    this.ringSize = options.ringSize ?? 20_000;
    this.pageSize = options.pageSize ?? 500;
  }

  /** The position of what is committed now: where a stream that wants only what follows starts. */
  now(): Promise<EventPosition> {
    return postgresCall(() => latestPosition(this.sql), this.options.timeoutMs);
  }

  /**
   * The events after `from` that pass `filter`, batch by batch, until
   * `signal` aborts. Each batch is sent before the next is read,
   * so a consumer that stops reading stops its own stream and no other.
   */
  async *subscribe(from: EventPosition, filter: EventFilter, signal: AbortSignal): AsyncGenerator<StreamEvent[]> {
    this.subscribers += 1;
    try {
      let cursor = from;
      await this.start();
      while (!signal.aborted && !this.closed) {
        const batch = this.fromRing(cursor) ?? (await postgresCall(() => eventsAfter(this.sql, cursor, this.pageSize), this.options.timeoutMs)).map(toStreamEvent);
        if (batch.length === 0) {
          await this.changed(signal);
          continue;
        }
        cursor = batch[batch.length - 1]!.position;
        const wanted = batch.filter((e) => passes(filter, e));
        if (wanted.length > 0) yield wanted;
      }
    } finally {
      this.subscribers -= 1;
    }
  }

  /** Something committed in this process: the reader looks now instead of at its next poll (other processes' commits wait for the poll). */
  poke(): void {
    if (this.wakeReader === null) this.poked = true;
    else this.wakeReader();
  }

  /** Ends every subscription (shutdown). */
  close(): void {
    this.closed = true;
    this.wake();
  }

  /** Starts the reader if it is not running. */
  private async start(): Promise<void> {
    if (this.head === null) {
      const head = await postgresCall(() => latestPosition(this.sql), this.options.timeoutMs);
      // Another subscriber may have started it meanwhile.
      if (this.head === null) {
        this.head = head;
        this.ringStart = head;
        this.ring = [];
      }
    }
    this.running ??= this.read().finally(() => {
      this.running = null;
    });
  }

  /** Polls while anyone is subscribed. */
  private async read(): Promise<void> {
    while (this.subscribers > 0 && !this.closed) {
      let got = 0;
      this.poked = false;
      try {
        const events = (await postgresCall(() => eventsAfter(this.sql, this.head!, this.pageSize), this.options.timeoutMs)).map(toStreamEvent);
        got = events.length;
        if (got > 0) {
          this.ring.push(...events);
          this.head = events[got - 1]!.position;
          if (this.ring.length > this.ringSize) {
            const dropped = this.ring.splice(0, this.ring.length - this.ringSize);
            this.ringStart = dropped[dropped.length - 1]!.position;
          }
          this.wake();
        }
      } catch (error) {
        this.options.log.warn({ err: error }, 'event stream: reading new events failed; retrying');
      }
      // A full page means more is waiting, and a commit poked during the
      // read may be past it: read again at once.
      if (got < this.pageSize && !this.poked) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => this.poke(), this.pollMs);
          this.wakeReader = () => {
            clearTimeout(timer);
            this.wakeReader = null;
            resolve();
          };
        });
      }
    }
    // Nobody listens: the ring would go stale, so the next subscriber starts afresh.
    this.head = null;
    this.ringStart = null;
    this.ring = [];
  }

  /** The events after `cursor` from the ring (up to a page), or null when the ring does not reach back to it. */
  private fromRing(cursor: EventPosition): StreamEvent[] | null {
    if (this.ringStart === null || comparePositions(cursor, this.ringStart) < 0) return null;
    // The ring is in stream order: find the first event past the cursor.
    let lo = 0;
    let hi = this.ring.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (comparePositions(this.ring[mid]!.position, cursor) <= 0) lo = mid + 1;
      else hi = mid;
    }
    return this.ring.slice(lo, lo + this.pageSize);
  }

  private changed(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.waiters.delete(done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.waiters.add(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}
