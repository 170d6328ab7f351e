/**
 * The marks and market definitions as this process last read them from the
 * marks hash (layout in marks-hash.ts), cached and parsed once per change.
 */
import { D, type Dec } from '../domain/decimal.js';
import { DependencyUnavailable } from '../domain/errors.js';
import type { Marks } from '../domain/margin.js';
import { effectiveMarket, type Market, type MarketParams } from '../domain/markets.js';
import { BucketMap } from './bucket-map.js';
import { overridesOf, type MarketJson } from './markets.js';
import { BOOT_FIELD, EPOCH_FIELD, isMarkField, marketSymbolOf } from './marks-hash.js';
import type { KeySpace, RedisClient, ShardKeys } from './redis.js';
import { runScript, SCRIPTS } from './scripts.js';

/** The marks and markets as one process last read them, at one epoch. */
export interface Book {
  readonly marks: BucketMap<Dec>;
  readonly markets: BucketMap<Market>;
  /** The marks' change counter when they were read (null: nothing posted yet). */
  readonly epoch: string | null;
}

const EMPTY_BOOK: Book = { marks: BucketMap.empty(), markets: BucketMap.empty(), epoch: null };

/** Redis answers, but its state is gone until the engine rebuilds it from PostgreSQL. */
export class RedisStateLost extends DependencyUnavailable {
  constructor() {
    super('redis');
    this.message = 'redis lost its state; the engine is rebuilding it from postgresql, retry shortly';
  }
}

/** The marks in the marks hash (its other fields are versions, markets and markers). */
export function parseMarks(hash: Record<string, string>): Map<string, Dec> {
  const marks = new Map<string, Dec>();
  for (const [field, value] of Object.entries(hash)) {
    if (isMarkField(field)) marks.set(field, new D(value));
  }
  return marks;
}

/** The markets in the marks hash, with the engine's defaults where a market sets none. */
export function parseMarkets(hash: Record<string, string>, defaults: MarketParams): Map<string, Market> {
  const markets = new Map<string, Market>();
  for (const [field, value] of Object.entries(hash)) {
    const symbol = marketSymbolOf(field);
    if (symbol !== null) markets.set(symbol, parseMarket(symbol, value, defaults));
  }
  return markets;
}

function parseMarket(symbol: string, json: string, defaults: MarketParams): Market {
  const m = JSON.parse(json) as MarketJson;
  return effectiveMarket(symbol, m.status, overridesOf(m.params), defaults);
}

/**
 * One shard's copy of the marks hash, cached: a read costs one HMGET of its
 * epoch, and after a change only the symbols that changed are read again
 * (from the change log), so the cost of a tick does not grow with the number
 * of other markets. A rebuild (a new boot marker) reads everything again.
 */
class ShardBook {
  private book: Book = EMPTY_BOOK;
  /** The boot marker the cached book was read under: a rebuild writes a new one and restarts the epoch counter. */
  private boot: string | null = null;
  /** When a Redis reply last showed the marks at the book's epoch with the boot marker present (performance.now()). */
  private confirmedAt = Number.NEGATIVE_INFINITY;
  /** The lowest epoch this process knows Redis has reached (raised by its own posts). */
  private floor = 0;
  private loading: { epoch: string | null; read: Promise<Book> } | null = null;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: ShardKeys,
    /** Every market's parameters where it sets none of its own. */
    private readonly defaults: MarketParams,
  ) {}

  async snapshot(): Promise<Book> {
    const [epoch, boot] = await this.redis.hmget(this.keys.marks, EPOCH_FIELD, BOOT_FIELD);
    return this.at(epoch ?? null, boot ?? null);
  }

  /** The book at `epoch`, given the epoch and boot marker just read with some other command. */
  async at(epoch: string | null, boot: string | null): Promise<Book> {
    // No boot marker: this Redis lost the engine's state (flushed, or restarted
    // without persistence). Nothing may be read or decided until it is rebuilt.
    if (boot === null) {
      this.confirmedAt = Number.NEGATIVE_INFINITY;
      throw new RedisStateLost();
    }
    if (boot !== this.boot) {
      // Redis was rebuilt: its epoch counter started again, so an equal epoch
      // proves nothing about the cached book. Read it all again.
      this.boot = boot;
      this.book = EMPTY_BOOK;
      this.floor = 0;
      this.confirmedAt = Number.NEGATIVE_INFINITY;
    }
    if (epoch !== null && epoch === this.book.epoch) {
      this.confirm();
      return this.book;
    }
    // Requests that saw the same new epoch share one re-read.
    if (this.loading && this.loading.epoch === epoch) return this.loading.read;
    const read = this.load();
    this.loading = { epoch, read };
    try {
      return await read;
    } finally {
      if (this.loading?.read === read) this.loading = null;
    }
  }

  private async load(): Promise<Book> {
    const base = this.book;
    if (base.epoch === null) return this.loadAll();
    const [epoch, boot, changed] = (await runScript(this.redis, SCRIPTS.marksSince, [this.keys.marks, this.keys.marklog, base.epoch])) as [
      string | null,
      string | null,
      string[],
    ];
    // Rebuilt meanwhile, or the epoch went backwards: only a full read is safe.
    if (boot !== this.boot || epoch === null || epochNumber(epoch) < epochNumber(base.epoch)) return this.loadAll();
    // Books handed out before stay as they were: the new one shares all but the changed buckets.
    const markChanges: [string, Dec | undefined][] = [];
    const marketChanges: [string, Market | undefined][] = [];
    for (let i = 0; i < changed.length; i += 3) {
      const symbol = changed[i]!;
      const price = changed[i + 1]!;
      const market = changed[i + 2]!;
      markChanges.push([symbol, price === '' ? undefined : new D(price)]);
      marketChanges.push([symbol, market === '' ? undefined : this.parseMarket(symbol, market)]);
    }
    return this.settle({ marks: base.marks.with(markChanges), markets: base.markets.with(marketChanges), epoch });
  }

  private async loadAll(): Promise<Book> {
    const hash = await this.redis.hgetall(this.keys.marks);
    const markets = parseMarkets(hash, this.defaults);
    this.boot = hash[BOOT_FIELD] ?? null;
    return this.settle({ marks: BucketMap.from(parseMarks(hash)), markets: BucketMap.from(markets), epoch: hash[EPOCH_FIELD] ?? null });
  }

  private settle(book: Book): Book {
    this.book = book;
    this.confirm();
    return book;
  }

  /** The book as last read, however old (a guess that the caller confirms against Redis). */
  get last(): Book {
    return this.book;
  }

  /** A market as the marks hash holds it (its JSON), with the defaults where it sets none. */
  parseMarket(symbol: string, json: string): Market {
    return parseMarket(symbol, json, this.defaults);
  }

  /**
   * The cached book, if a Redis reply confirmed it within `maxAgeMs` and
   * nothing since says it moved; null otherwise (read it with the account).
   */
  trusted(maxAgeMs: number): Book | null {
    if (this.loading !== null || performance.now() - this.confirmedAt > maxAgeMs) return null;
    return this.book;
  }

  /** Another command's reply read the marks' epoch and boot marker: it confirms the cached book or withdraws the trust in it. */
  observe(epoch: string | null, boot: string | null): void {
    if (boot !== null && boot === this.boot && epoch === this.book.epoch) this.confirm();
    else this.confirmedAt = Number.NEGATIVE_INFINITY;
  }

  /** This process moved a mark or market to `epoch`: until the cache is re-read at or past it, nothing trusts the cache. */
  moved(epoch: number): void {
    if (epoch > this.floor) this.floor = epoch;
    this.confirmedAt = Number.NEGATIVE_INFINITY;
  }

  /** Something this process posted may or may not have reached Redis: trust nothing cached until Redis is read again. */
  distrust(): void {
    this.confirmedAt = Number.NEGATIVE_INFINITY;
  }

  private confirm(): void {
    // A reply sent before this process's own newer post still shows the old epoch: it confirms nothing.
    this.confirmedAt = epochNumber(this.book.epoch) >= this.floor ? performance.now() : Number.NEGATIVE_INFINITY;
  }
}

/**
 * The marks and markets as this process last read them, shard by shard.
 * Every shard holds a full copy of the marks in its own slot (so an apply
 * reads its own shard's epoch in the same script); publishes write every
 * copy, version-guarded, so the copies hold the same content once a publish
 * has reached them all, but their epoch counters are their own (a publish
 * that loses a race on one shard does not bump it). So each shard's copy is
 * cached and confirmed on its own, exactly as one copy was: an account's
 * reads and replies are compared with its shard's book only, and this
 * process's own posts raise each shard's floor by that shard's epoch.
 * Readers that need no particular shard (a report, a funding event) take
 * shard 0's.
 */
export class MarkBook {
  private readonly books: ShardBook[];

  constructor(
    redis: RedisClient,
    private readonly keys: KeySpace,
    /** Every market's parameters where it sets none of its own. */
    defaults: MarketParams,
  ) {
    this.books = keys.shards.map((k) => new ShardBook(redis, k, defaults));
  }

  /** The book of the shard account `accountId` belongs to. */
  shardOf(accountId: number): number {
    return this.keys.shardOf(accountId);
  }

  async current(shard = 0): Promise<Marks> {
    return (await this.snapshot(shard)).marks;
  }

  /** Shard `shard`'s copy of the marks, as Redis holds it now (one HMGET when the cache is current). */
  snapshot(shard = 0): Promise<Book> {
    return this.books[shard]!.snapshot();
  }

  /** Shard `shard`'s book at `epoch`, given the shard's epoch and boot marker just read with some other command. */
  at(epoch: string | null, boot: string | null, shard = 0): Promise<Book> {
    return this.books[shard]!.at(epoch, boot);
  }

  /** Shard `shard`'s cached book, if a Redis reply confirmed it within `maxAgeMs` and nothing since says it moved. */
  trusted(maxAgeMs: number, shard = 0): Book | null {
    return this.books[shard]!.trusted(maxAgeMs);
  }

  /** A reply from shard `shard` read its epoch and boot marker. */
  observe(epoch: string | null, boot: string | null, shard = 0): void {
    this.books[shard]!.observe(epoch, boot);
  }

  /** This process moved a mark or market: `epochs[k]` is shard k's epoch after it (0: that shard did not change). */
  moved(epochs: readonly number[]): void {
    epochs.forEach((epoch, k) => {
      if (epoch > 0) this.books[k]?.moved(epoch);
    });
  }

  /** Something this process posted may or may not have reached Redis: trust no shard's cache until it is read again. */
  distrust(): void {
    for (const b of this.books) b.distrust();
  }

  /** Shard 0's book as last read, however old (a guess that the caller confirms against Redis). */
  get last(): Book {
    return this.books[0]!.last;
  }

  /** A market as the marks hash holds it (its JSON), with the defaults where it sets none. */
  parseMarket(symbol: string, json: string): Market {
    return this.books[0]!.parseMarket(symbol, json);
  }
}

/** Whether every shard holds the boot marker (a rebuild writes it last on each; its absence on any means state was lost there). */
export async function bootMarkerPresent(redis: RedisClient, keys: KeySpace): Promise<boolean> {
  const present = await Promise.all(keys.shards.map((k) => redis.hexists(k.marks, BOOT_FIELD)));
  return present.every((p) => p === 1);
}

/** The marks' change counter as a number (null: no mark posted yet). Not money. */
function epochNumber(epoch: string | null): number {
  return epoch === null ? 0 : Number.parseInt(epoch, 10);
}
