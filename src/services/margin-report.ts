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
import type { Redis } from 'ioredis';
import { riskSummary, type MarginRates, type MarginStatus, type Marks } from '../domain/margin.js';
import { accountExists, readAccounts } from '../store/account-state.js';
import type { MarkBook } from '../store/mark-book.js';
import type { KeySpace } from '../store/redis.js';
import { accountOf, endangeredBy, type RiskKeys } from '../store/risk-index.js';
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
  readonly redis: Redis;
  readonly keys: KeySpace;
  readonly risk: RiskKeys;
  readonly marks: MarkBook;
  readonly rates: MarginRates;
  /** Resolves once Redis holds what this process acknowledged; a 503 if Redis does not get there in time (see AccountGate.applied). */
  readonly applied: (accountId?: number) => Promise<void>;
}

export class MarginReportService {
  constructor(private readonly deps: MarginReportDeps) {}

  /** The revision of everything the report shows; changes whenever an account or a mark changes. */
  async etag(query: ReportQuery): Promise<string> {
    // Every write this process acknowledged is in the revision read below.
    await this.deps.applied();
    const rev = await redisCall(() => this.deps.redis.get(this.deps.risk.rev));
    const q = createHash('sha1').update(`${query.limit}|${query.cursor ?? ''}|${query.status ?? ''}`).digest('base64url').slice(0, 12);
    return `"r${rev ?? '0'}-${q}"`;
  }

  async page(query: ReportQuery): Promise<ReportPage> {
    await this.deps.applied();
    return redisCall(() => this.build(query));
  }

  private async build(query: ReportQuery): Promise<ReportPage> {
    const { redis, keys, risk } = this.deps;
    const after = decodeCursor(query.cursor);
    const [rev, marks, symbols, total] = await Promise.all([
      redis.get(risk.rev),
      this.deps.marks.current(),
      redis.smembers(risk.symbols),
      redis.scard(keys.accounts),
    ]);
    this.useRevision(rev ?? '0');
    // Small chunks: a page merges several lists, and what a list read past the page is read again by the next one.
    const sources = this.sources(symbols.sort(), marks, after, Math.min(CHUNK_MAX, query.limit + 1));
    const rows: ReportEntry[] = [];
    const wanted = query.status;
    for (;;) {
      const next = await headOf(sources);
      if (!next) break;
      const { item, source } = next;
      // Sources run riskiest first: once past the wanted band, nothing later matches.
      if (wanted && isPast(item.margin.status, wanted)) break;
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
      redis.smembers(risk.multi).then((ms) => ms.map(accountOf)),
      ...unmarked.flatMap((s) => [redis.zrange(risk.long(s), 0, -1), redis.zrange(risk.short(s), 0, -1)].map((p) => p.then((ms) => ms.map(accountOf)))),
    ]);
    const ids = [...new Set(found.flat())];
    const items = (await this.read(ids, marks)).filter((item): item is ReportEntry => item !== null && item.margin.status === 'liquidatable');
    return items.sort(riskier).slice(0, 1000).map((item) => item.accountId);
  }

  /**
   * The lists a page merges. With a maintenance rate of 0 every utilisation
   * is 0 or null whatever the threshold (and at 1 there is no threshold), so
   * the threshold lists carry no order: every holder is then read and sorted.
   */
  private sources(symbols: string[], marks: Marks, after: ReportKey | null, chunk: number): Source[] {
    const { risk, rates } = this.deps;
    const ordered = rates.maintenance.gt(0) && rates.maintenance.lt(1);
    const out: Source[] = [];
    const materialisedSymbols: string[] = [];
    for (const symbol of symbols) {
      const mark = marks.get(symbol);
      if (!mark || !ordered) {
        materialisedSymbols.push(symbol);
        continue;
      }
      for (const side of ['long', 'short'] as const) {
        const key = side === 'long' ? risk.long(symbol) : risk.short(symbol);
        const from = seekScore(side, mark, rates.maintenance, after);
        out.push(this.indexSource(key, marks, (entry) => onlyPosition(entry, symbol, side), after, from, chunk));
      }
    }
    out.push(this.materialisedSource(marks, after, materialisedSymbols));
    // Every flat account scores 0: read from the start, or entered at `after`'s id (IndexSource's long runs).
    out.push(this.indexSource(risk.flat, marks, (entry) => entry.account.positions.size === 0, after, -Infinity, chunk));
    return out;
  }

  /** One of the risk index's lists (see report-sources.ts), its accounts valued at this page's marks. */
  private indexSource(zkey: string, marks: Marks, belongs: (entry: ReportEntry) => boolean, after: ReportKey | null, from: number, chunk: number): Source {
    return new IndexSource(this.deps.redis, zkey, { after, from, chunk, belongs, value: (ids) => this.read(ids, marks) });
  }

  /** Multi-symbol accounts and holders of symbols the lists cannot order (see sources): read all, sorted exactly, served from after `after`. */
  private materialisedSource(marks: Marks, after: ReportKey | null, unorderedSymbols: string[]): Source {
    const { redis, risk } = this.deps;
    let sorted: ReportEntry[] | null = null;
    let at = 0;
    const source: Source = {
      ready: () => sorted !== null,
      head: () => sorted?.[at],
      fill: async () => {
        if (sorted) return;
        const lists = await Promise.all([
          redis.smembers(risk.multi),
          ...unorderedSymbols.flatMap((s) => [redis.zrange(risk.long(s), 0, -1), redis.zrange(risk.short(s), 0, -1)]),
        ]);
        const ids = [...new Set(lists.flat().map(accountOf))];
        const items = await this.read(ids, marks);
        const unordered = new Set(unorderedSymbols);
        sorted = items
          .filter((item): item is ReportEntry => item !== null && item.account.positions.size > 0 && comesAfter(item, after))
          .filter((item) => item.account.positions.size > 1 || [...item.account.positions.keys()].some((s) => unordered.has(s)))
          .sort(riskier);
      },
      take: () => {
        at++;
      },
    };
    return source;
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

  private async read(ids: number[], marks: Marks): Promise<(ReportEntry | null)[]> {
    const { redis, keys, rates } = this.deps;
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
      const item = accountExists(account) ? { accountId: account.accountId, account, margin: riskSummary(account, marks, rates) } : null;
      found.set(account.accountId, item);
      // A read-ahead left over from an earlier page must not fill the cache of a newer revision.
      if (this.cacheRev === rev) this.cache.set(account.accountId, item);
    }
    return ids.map((id) => found.get(id) ?? null);
  }
}

/** An item of a per-symbol list belongs to it only while it holds just that symbol, on that side. */
function onlyPosition(item: ReportEntry, symbol: string, side: 'long' | 'short'): boolean {
  const ps = item.account.positions;
  const p = ps.get(symbol);
  return ps.size === 1 && p !== undefined && p.quantity.isPos() === (side === 'long');
}

const BAND: Record<MarginStatus, number> = { liquidatable: 0, margin_call: 1, healthy: 2 };
/** Statuses get safer down the list: liquidatable, then margin call, then healthy. */
function isPast(status: MarginStatus, wanted: MarginStatus): boolean {
  return BAND[status] > BAND[wanted];
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
