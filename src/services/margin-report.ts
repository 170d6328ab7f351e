/**
 * GET /margin-report: every account, riskiest first, paged.
 *
 * Nothing is scanned to answer a page. For accounts holding one symbol,
 * margin utilisation at the current mark is monotonic in the position's
 * threshold (a long's utilisation m·r / (m − (1−r)·T) rises with T, a short's
 * m·r / ((1+r)·T − m) falls with it), so the risk index's sorted sets already
 * list them riskiest first. A page merges those lists, by exact decimal
 * utilisation, with two small sources sorted on the spot: accounts holding
 * several symbols (and holders of a symbol with no mark yet, whose
 * valuation price is each one's own entry), and accounts with no position
 * (utilisation 0) in id order. Reading a page writes nothing.
 *
 * The cursor is the key (utilisation, account id) of the last row a page
 * showed (report-cursor.ts); the next page starts every list at the score
 * where accounts after that key begin, at the marks of the moment, and
 * passes over what does not come after it. Pages read at different times
 * see the accounts as they are then.
 */
import { createHash } from 'node:crypto';
import { type Dec, ZERO } from '../domain/decimal.js';
import { marketRules, riskSummary, type MarginRules, type MarginStatus, type Marks, type RiskParams } from '../domain/margin.js';
import { accountCount, accountExists, readAccounts } from '../store/account-state.js';
import type { Book, MarkBook } from '../store/mark-book.js';
import type { KeySpace, RedisClient } from '../store/redis.js';
import { accountOf, endangeredBy, holdersOf, membersOfAll, revision, scoreAtMost, type RiskKeys } from '../store/risk-index.js';
import { redisCall } from './dependencies.js';
import { decodeCursor, encodeCursor, seekScore, type ReportKey } from './report-cursor.js';
import { comesAfter, IndexSource, keyOf, riskier, type ReportEntry, type Source } from './report-sources.js';

/** A page: its accounts riskiest first (src/http/views.ts prints them). */
export interface ReportPage {
  readonly totalAccounts: number;
  readonly liquidationCandidates: number[];
  readonly entries: ReportEntry[];
  readonly nextCursor: string | null;
}

export interface ReportQuery {
  readonly limit: number;
  readonly cursor: string | null;
  readonly status: MarginStatus | null;
}

const CHUNK_MAX = 256;
/** Most accounts kept valued between pages of one revision (a few pages' look-ahead). */
const CACHE_MAX = 10_000;

export interface MarginReportDeps {
  readonly redis: RedisClient;
  readonly keys: KeySpace;
  readonly risk: RiskKeys;
  readonly marks: MarkBook;
  readonly riskDefaults: RiskParams;
  /** Resolves once Redis holds what this process acknowledged; a 503 if Redis does not get there in time (see AccountGate.applied). */
  readonly applied: (accountId?: number) => Promise<void>;
}

export class MarginReportService {
  constructor(private readonly deps: MarginReportDeps) {}

  /** The revision of everything the report shows; changes whenever an account or a mark changes. */
  async etag(query: ReportQuery): Promise<string> {
    // Every write this process acknowledged is in the revision read below.
    await this.deps.applied();
    const rev = await redisCall(() => revision(this.deps.redis, this.deps.risk));
    const q = createHash('sha1').update(`${query.limit}|${query.cursor ?? ''}|${query.status ?? ''}`).digest('base64url').slice(0, 12);
    return `"r${rev}-${q}"`;
  }

  async page(query: ReportQuery): Promise<ReportPage> {
    await this.deps.applied();
    return redisCall(() => this.build(query));
  }

  private async build(query: ReportQuery): Promise<ReportPage> {
    const { redis, keys, risk } = this.deps;
    const after = decodeCursor(query.cursor);
    const [rev, marks, symbols, total] = await Promise.all([
      revision(redis, risk),
      this.deps.marks.snapshot().then((book) => this.rulesAt(book)),
      Promise.all(risk.shards.map((rk) => redis.smembers(rk.symbols))).then((lists) => [...new Set(lists.flat())]),
      accountCount(redis, keys),
    ]);
    this.useRevision(rev);
    // Small chunks: a page merges several lists, and what a list read past the page is read again by the next one.
    const sources = this.sources(symbols.sort(), marks, after, Math.min(CHUNK_MAX, query.limit + 1));
    const rows: ReportEntry[] = [];
    const wanted = query.status;
    for (;;) {
      const next = await headOf(sources);
      if (!next) break;
      const { item, source } = next;
      // Sources run riskiest first: once past the wanted band, nothing later matches.
      if (wanted && isPast(item, wanted, this.callFloor.get(marks) ?? ZERO)) break;
      if (!wanted || item.margin.status === wanted) {
        if (rows.length === query.limit) {
          const candidates = await this.candidates(symbols, marks);
          return { totalAccounts: total, liquidationCandidates: candidates, entries: rows, nextCursor: encodeCursor(keyOf(rows[rows.length - 1]!)) };
        }
        rows.push(item);
      }
      source.take();
    }
    return { totalAccounts: total, liquidationCandidates: await this.candidates(symbols, marks), entries: rows, nextCursor: null };
  }

  /**
   * Every account liquidatable right now (normally none: ticks liquidate at
   * once), riskiest first, at most 1,000. Found the way a tick finds them —
   * one threshold range query per side of each marked symbol — plus the
   * multi-symbol accounts and holders of unmarked symbols, each checked exactly.
   */
  private async candidates(symbols: string[], marks: Marks): Promise<number[]> {
    const { redis, risk } = this.deps;
    const unmarked = symbols.filter((s) => !marks.has(s));
    const found = await Promise.all([
      ...symbols.flatMap((s) => {
        const mark = marks.get(s);
        return mark ? [endangeredBy(redis, risk, s, mark)] : [];
      }),
      membersOfAll(redis, risk, (rk) => rk.multi, 'set'),
      ...unmarked.map((s) => holdersOf(redis, risk, s)),
    ]);
    const ids = [...new Set(found.flat())];
    const items = (await this.read(ids, marks)).filter((item): item is ReportEntry => item !== null && item.margin.status === 'liquidatable');
    return items.sort(riskier).slice(0, 1000).map((item) => item.accountId);
  }

  /**
   * The lists a page merges, per marked symbol by its market's (first tier's)
   * maintenance rate r. With r = 0 every utilisation is 0 or null whatever
   * the threshold (and at 1 there is no threshold), so the threshold lists
   * carry no order: every holder is then read and sorted. In a market with
   * more than one tier the lists ordered by the tier-one threshold serve the
   * positions in the first tier at the current mark; the larger ones are
   * read and sorted exactly (docs/architecture.md, "Margin report").
   */
  private sources(symbols: string[], marks: Marks, after: ReportKey | null, chunk: number): Source[] {
    const { risk } = this.deps;
    const rules = this.rulesOf(marks);
    const out: Source[] = [];
    const materialisedSymbols: string[] = [];
    const beyondFirstTier: BeyondFirstTier[] = [];
    for (const symbol of symbols) {
      const mark = marks.get(symbol);
      const tiers = rules.paramsOf(symbol).tiers;
      const rate = tiers[0]!.maintenanceMarginRate;
      if (!mark || !(rate.gt(0) && rate.lt(1))) {
        materialisedSymbols.push(symbol);
        continue;
      }
      const bound = tiers.length > 1 ? tiers[0]!.maxNotional! : null;
      if (bound !== null) beyondFirstTier.push({ symbol, mark, bound });
      for (const side of ['long', 'short'] as const) {
        const from = seekScore(side, mark, rate, after);
        const belongs =
          bound === null
            ? (entry: ReportEntry) => onlyPosition(entry, symbol, side)
            : (entry: ReportEntry) => onlyPosition(entry, symbol, side) && inFirstTier(entry, symbol, mark, bound);
        // Each shard's list is one more source of the merge.
        for (const rk of risk.shards) {
          const key = bound === null ? (side === 'long' ? rk.long(symbol) : rk.short(symbol)) : side === 'long' ? rk.repLong(symbol) : rk.repShort(symbol);
          out.push(this.indexSource(key, marks, belongs, after, from, chunk));
        }
      }
    }
    out.push(this.materialisedSource(marks, after, materialisedSymbols, beyondFirstTier));
    // Every flat account scores 0: read from the start, or entered at `after`'s id (IndexSource's long runs).
    for (const rk of risk.shards) out.push(this.indexSource(rk.flat, marks, (entry) => entry.account.positions.size === 0, after, -Infinity, chunk));
    return out;
  }

  /** One of the risk index's lists (see report-sources.ts), its accounts valued at this page's marks. */
  private indexSource(zkey: string, marks: Marks, belongs: (entry: ReportEntry) => boolean, after: ReportKey | null, from: number, chunk: number): Source {
    return new IndexSource(this.deps.redis, zkey, { after, from, chunk, belongs, value: (ids) => this.read(ids, marks) });
  }

  /**
   * Multi-symbol accounts, holders of symbols the lists cannot order, and
   * positions beyond their market's first tier at the current mark (see
   * sources): read all, sorted exactly, served from after `after`.
   */
  private materialisedSource(marks: Marks, after: ReportKey | null, unorderedSymbols: string[], beyond: readonly BeyondFirstTier[]): Source {
    let sorted: ReportEntry[] | null = null;
    let at = 0;
    const rev = this.cacheRev;
    // What the list is made of at this revision: the same for every page of an unchanged book.
    const recipe = `${unorderedSymbols.join(',')}|${beyond.map((b) => `${b.symbol}@${b.mark.toString()}`).join(',')}`;
    const source: Source = {
      ready: () => sorted !== null,
      head: () => sorted?.[at],
      fill: async () => {
        if (sorted) return;
        const known = this.materialised;
        const all =
          known !== null && known.rev === rev && known.marks === marks && known.recipe === recipe
            ? known.list
            : await this.materialise(marks, unorderedSymbols, beyond);
        if (this.cacheRev === rev) this.materialised = { rev, marks, recipe, list: all };
        sorted = after === null ? all : all.filter((item) => comesAfter(item, after));
      },
      take: () => {
        at++;
      },
    };
    return source;
  }

  /**
   * The materialised source's whole list at one revision, sorted: kept so
   * the pages of an unchanged book sort it once (see materialisedSource).
   */
  private materialised: { rev: string; marks: Marks; recipe: string; list: ReportEntry[] } | null = null;

  private async materialise(marks: Marks, unorderedSymbols: string[], beyond: readonly BeyondFirstTier[]): Promise<ReportEntry[]> {
    const { redis, risk } = this.deps;
    // The union of every shard's lists, read in parallel.
    const lists = await Promise.all(
      risk.shards.flatMap((rk) => [
        redis.smembers(rk.multi),
        ...unorderedSymbols.flatMap((s) => [redis.zrange(rk.long(s), 0, -1), redis.zrange(rk.short(s), 0, -1)]),
        // |q| > bound / mark, the bound rounded down to a double below it: a few too many is harmless (filtered below).
        ...beyond.map((b) => redis.zrangebyscore(rk.size(b.symbol), scoreAtMost(b.bound.div(b.mark)), '+inf')),
      ]),
    );
    const ids = [...new Set(lists.flat().map(accountOf))];
    const items = await this.read(ids, marks);
    const unordered = new Set(unorderedSymbols);
    const tiered = new Map(beyond.map((b) => [b.symbol, b]));
    const served = (item: ReportEntry) => {
      const ps = item.account.positions;
      if (ps.size > 1) return true;
      const [symbol] = ps.keys();
      if (unordered.has(symbol!)) return true;
      const b = tiered.get(symbol!);
      return b !== undefined && !inFirstTier(item, symbol!, b.mark, b.bound);
    };
    return items.filter((item): item is ReportEntry => item !== null && item.account.positions.size > 0).filter(served).sort(riskier);
  }

  /**
   * Accounts valued at one revision are kept (the most recent CACHE_MAX)
   * until the revision moves (any account or mark change bumps it before a
   * page reads it), so paging through the report does not read again what the
   * previous page read ahead.
   */
  private cacheRev = '';
  private readonly cache = new Map<number, ReportEntry | null>();

  private useRevision(rev: string): void {
    if (rev !== this.cacheRev) {
      this.cache.clear();
      this.cacheRev = rev;
    }
    // Oldest first: what a later page reads again is what the last one read ahead.
    if (this.cache.size > CACHE_MAX) {
      for (const id of this.cache.keys()) {
        this.cache.delete(id);
        if (this.cache.size <= CACHE_MAX / 2) break;
      }
    }
  }

  /** The margin rules of each book a page valued accounts at (the markets read with its marks). */
  private readonly rules = new WeakMap<Marks, MarginRules>();

  /**
   * Per book: 100 × the least maintenance/initial ratio of any tier of any
   * market. An account's maintenance/initial ratio is never below it (each
   * position's margins are sums of tier rates over slices of its notional),
   * so at or below this utilisation no account is in margin call.
   */
  private readonly callFloor = new WeakMap<Marks, Dec>();

  private rulesAt(book: Book): Marks {
    // A book is immutable: its rules and floor are worked out once, not on every page.
    if (this.rules.has(book.marks)) return book.marks;
    this.rules.set(book.marks, marketRules(book.markets, this.deps.riskDefaults));
    let least: Dec | null = null;
    for (const tiers of [this.deps.riskDefaults.tiers, ...[...book.markets.values()].map((m) => m.tiers)]) {
      for (const t of tiers) {
        if (t.initialMarginRate.isZero()) continue;
        const ratio = t.maintenanceMarginRate.div(t.initialMarginRate);
        if (least === null || ratio.lt(least)) least = ratio;
      }
    }
    this.callFloor.set(book.marks, (least ?? ZERO).times(100));
    return book.marks;
  }

  /** The rules of a book a page read (rulesAt ran on it first). */
  private rulesOf(marks: Marks): MarginRules {
    return this.rules.get(marks) ?? marketRules(new Map(), this.deps.riskDefaults);
  }

  private async read(ids: number[], marks: Marks): Promise<(ReportEntry | null)[]> {
    const { redis, keys } = this.deps;
    const rev = this.cacheRev;
    // What the cache holds is taken now: another page may clear it (a new revision) while this one reads.
    const found = new Map<number, ReportEntry | null>();
    const missing: number[] = [];
    for (const id of ids) {
      const item = this.cache.get(id);
      if (item !== undefined) found.set(id, item);
      else missing.push(id);
    }
    const accounts = await readAccounts(redis, keys, missing);
    for (const account of accounts) {
      const item = accountExists(account) ? { accountId: account.accountId, account, margin: riskSummary(account, marks, this.rulesOf(marks)) } : null;
      found.set(account.accountId, item);
      // A read-ahead left over from an earlier page must not fill the cache of a newer revision.
      if (this.cacheRev === rev) this.cache.set(account.accountId, item);
    }
    return ids.map((id) => found.get(id) ?? null);
  }
}

/** A symbol whose market has more than one tier, at its current mark: positions of |q|·mark above `bound` are beyond its first tier. */
interface BeyondFirstTier {
  readonly symbol: string;
  readonly mark: Dec;
  readonly bound: Dec;
}

/** The position on `symbol` is in its market's first tier at `mark` (exactly). */
function inFirstTier(item: ReportEntry, symbol: string, mark: Dec, bound: Dec): boolean {
  const p = item.account.positions.get(symbol);
  return p !== undefined && p.quantity.abs().times(mark).lte(bound);
}

/** An item of a per-symbol list belongs to it only while it holds just that symbol, on that side. */
function onlyPosition(item: ReportEntry, symbol: string, side: 'long' | 'short'): boolean {
  const ps = item.account.positions;
  const p = ps.get(symbol);
  return ps.size === 1 && p !== undefined && p.quantity.isPos() === (side === 'long');
}

/**
 * Past the wanted band, in a list that runs riskiest first: liquidatable is
 * utilisation above 100 (or null) for every account; margin call ends, for
 * some account, anywhere down to `callFloor` (its maintenance/initial ratio
 * differs with its markets' tiers), so only below that is nothing left.
 */
function isPast(item: ReportEntry, wanted: MarginStatus, callFloor: Dec): boolean {
  const u = item.margin.utilisationPct;
  if (wanted === 'liquidatable') return item.margin.status !== 'liquidatable' && u !== null && u.lte(100);
  if (wanted === 'margin_call') return u !== null && u.lte(callFloor);
  return false;
}

async function headOf(sources: Source[]): Promise<{ item: ReportEntry; source: Source } | null> {
  // Only sources whose buffers ran dry read, and they read at the same time.
  const dry = sources.filter((s) => !s.ready());
  if (dry.length > 0) await Promise.all(dry.map((s) => s.fill()));
  let best: { item: ReportEntry; source: Source } | null = null;
  for (const source of sources) {
    const item = source.head();
    if (item && (!best || riskier(item, best.item) < 0)) best = { item, source };
  }
  return best;
}
