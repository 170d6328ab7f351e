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
 * The cursor records how far each source has been consumed; pages read at
 * different times see the accounts as they are then.
 */
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { str } from '../domain/decimal.js';
import { EngineError } from '../domain/errors.js';
import { riskSummary, type MarginRates, type MarginStatus, type Marks, type RiskSummary } from '../domain/margin.js';
import { accountExists, readAccounts, type StoredAccount } from '../store/account-state.js';
import type { MarkBook } from '../store/mark-book.js';
import type { KeySpace } from '../store/redis.js';
import { accountOf, endangeredBy, type RiskKeys } from '../store/risk-index.js';
import { redisCall } from './dependencies.js';

export interface ReportRow {
  readonly account_id: number;
  readonly balance: string;
  readonly equity: string;
  readonly notional: string;
  readonly initial_margin: string;
  readonly maintenance_margin: string;
  readonly margin_utilisation_pct: string | null;
  readonly status: MarginStatus;
  readonly liquidation_risk: boolean;
}

export interface MarginReportPage {
  readonly total_accounts: number;
  readonly liquidation_candidates: number[];
  readonly accounts_detail: ReportRow[];
  readonly next_cursor: string | null;
}

export interface ReportQuery {
  readonly limit: number;
  readonly cursor: string | null;
  readonly status: MarginStatus | null;
}

interface Item {
  readonly accountId: number;
  readonly account: StoredAccount;
  readonly margin: RiskSummary;
}

/** Riskiest first: null utilisation (equity ≤ 0 with positions), then utilisation descending, then account id. */
function riskier(a: Item, b: Item): number {
  const ua = a.margin.utilisationPct;
  const ub = b.margin.utilisationPct;
  if (ua === null || ub === null) {
    if (ua === null && ub !== null) return -1;
    if (ub === null && ua !== null) return 1;
  } else {
    const c = ub.cmp(ua);
    if (c !== 0) return c;
  }
  return a.accountId - b.accountId;
}

/** One read of an index list: members with their scores, their accounts valued, and how to order them. */
interface Chunk {
  readonly members: [string, string][];
  readonly items: (Item | null)[];
  /** The score of a run too long to sort that this chunk ends inside, if any. */
  readonly longRun: string | null;
  /** The list ends with this chunk. */
  readonly last: boolean;
}

interface Source {
  readonly key: string;
  /** Consumed so far (the cursor's record for this source). */
  consumed: number;
  /** Reads more when the buffer has run dry (the merge awaits only sources that need it). */
  fill(): Promise<void>;
  /** True when head() can answer without reading. */
  ready(): boolean;
  /** The next item, or undefined when the source is exhausted (only meaningful when ready). */
  head(): Item | undefined;
  take(): void;
}

const CHUNK_MAX = 256;
/** Most accounts kept valued between pages of one revision (a few pages' look-ahead). */
const CACHE_MAX = 10_000;
/** Longest run of equal index scores read whole and sorted exactly. */
const RUN_MAX = 1024;

const badCursor = () => new EngineError('VALIDATION_ERROR', 'invalid cursor', { fields: [{ field: 'querystring.cursor', message: 'must be a cursor returned by a previous page' }] });

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

  async page(query: ReportQuery): Promise<MarginReportPage> {
    await this.deps.applied();
    return redisCall(() => this.build(query));
  }

  private async build(query: ReportQuery): Promise<MarginReportPage> {
    const { redis, keys, risk } = this.deps;
    const consumed = decodeCursor(query.cursor);
    const [rev, marks, symbols, total] = await Promise.all([
      redis.get(risk.rev),
      this.deps.marks.current(),
      redis.smembers(risk.symbols),
      redis.scard(keys.accounts),
    ]);
    this.useRevision(rev ?? '0');
    // Small chunks: a page merges several lists, and what a list read past the page is read again by the next one.
    const sources = this.sources(symbols.sort(), marks, consumed, Math.min(CHUNK_MAX, query.limit + 1));
    const rows: ReportRow[] = [];
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
          return { total_accounts: total, liquidation_candidates: candidates, accounts_detail: rows, next_cursor: encodeCursor(sources) };
        }
        rows.push(toRow(item));
      }
      source.take();
    }
    return { total_accounts: total, liquidation_candidates: await this.candidates(symbols, marks), accounts_detail: rows, next_cursor: null };
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
    const items = (await this.read(ids, marks)).filter((item): item is Item => item !== null && item.margin.status === 'liquidatable');
    return items.sort(riskier).slice(0, 1000).map((item) => item.accountId);
  }

  private sources(symbols: string[], marks: Marks, consumed: Map<string, number>, chunk: number): Source[] {
    const { risk } = this.deps;
    const out: Source[] = [];
    const materialisedSymbols: string[] = [];
    for (const symbol of symbols) {
      if (!marks.has(symbol)) {
        materialisedSymbols.push(symbol);
        continue;
      }
      for (const side of ['long', 'short'] as const) {
        const key = side === 'long' ? risk.long(symbol) : risk.short(symbol);
        out.push(this.indexSource(`${side[0]}:${symbol}`, key, marks, (item) => onlyPosition(item, symbol, side), consumed, chunk));
      }
    }
    out.push(this.materialisedSource('m', marks, consumed, materialisedSymbols));
    out.push(this.indexSource('f', risk.flat, marks, (item) => item.account.positions.size === 0, consumed, chunk));
    return out;
  }

  /**
   * A sorted set read in chunks from the risky end. Scores are doubles, so a
   * run of equal scores (up to RUN_MAX members) is read whole and ordered
   * exactly; members that belong to another source (or no longer exist) go to
   * the end of their run. A longer run is served in the set's own order (by
   * account id): exact whenever its members' thresholds are truly equal, as
   * they are in practice — thresholds that differ beyond a double's 15–17
   * digits in a run of over RUN_MAX accounts may come out in id order.
   * `consumed` counts members in this order.
   */
  private indexSource(key: string, zkey: string, marks: Marks, belongs: (item: Item) => boolean, consumed: Map<string, number>, chunk: number): Source {
    const { redis } = this.deps;
    const start = consumed.get(key) ?? 0;
    let next = -1; // rank of the next member to read (-1: not positioned yet)
    let skip = 0; // entries of the first run that earlier pages consumed
    let longRun: string | null = null; // score of a run too long to sort, while inside it
    let exhausted = false;
    // The first read is small: a page often barely touches a list (flat
    // accounts only come at the end; after a big move one side of a symbol is
    // far safer than the other), and what it reads but does not use is read
    // again by the next page. Lists the page does consume then read full chunks.
    let size = Math.min(32, chunk);
    const buffer: (Item | null)[] = [];
    const runLength = (score: string) => redis.zcount(zkey, score, score);
    const position = async () => {
      next = start;
      if (start === 0) return;
      const at = await redis.zrange(zkey, start, start, 'WITHSCORES');
      if (at.length === 0) return; // past the end
      const score = at[1]!;
      if ((await runLength(score)) > RUN_MAX) {
        longRun = score; // served in set order: resume right here
        return;
      }
      next = await redis.zcount(zkey, '-inf', `(${score}`); // where the run holding it starts
      skip = start - next;
    };
    const dropPassedOver = () => {
      while (buffer.length > 0 && buffer[0] === null) {
        buffer.shift();
        source.consumed++;
      }
    };
    /**
     * Reads the next chunk (members, run completion, accounts valued) and
     * advances the read position. Chunks are read strictly one after another,
     * so the read-side state (next, size, longRun) moves in order.
     */
    const readChunk = async (): Promise<Chunk> => {
      if (next < 0) await position();
      const raw = await redis.zrange(zkey, next, next + size - 1, 'WITHSCORES');
      const members: [string, string][] = [];
      for (let i = 0; i < raw.length; i += 2) members.push([raw[i]!, raw[i + 1]!]);
      const full = members.length === size;
      size = chunk;
      if (full) {
        const last = members[members.length - 1]![1];
        if (last !== longRun && (await runLength(last)) <= RUN_MAX) {
          // Complete the last score's run, so no sortable run is split across chunks.
          const have = new Set(members.map(([m]) => m));
          for (const m of await redis.zrangebyscore(zkey, last, last)) if (!have.has(m)) members.push([m, last]);
        } else {
          longRun = last;
        }
      }
      next += members.length;
      const items = await this.read(members.map(([m]) => accountOf(m)), marks);
      const chunkLongRun = longRun;
      if (members.length > 0 && members[members.length - 1]![1] !== longRun) longRun = null;
      return { members, items, longRun: chunkLongRun, last: !full };
    };
    /** Puts a chunk's items in the buffer: each run of equal scores sorted exactly (unless too long to sort). */
    const use = ({ members, items, longRun: runTooLong, last }: Chunk) => {
      for (let i = 0; i < members.length; ) {
        const score = members[i]![1];
        let j = i;
        while (j < members.length && members[j]![1] === score) j++;
        const run = items.slice(i, j);
        let entries: (Item | null)[];
        if (score === runTooLong) entries = run.map((item) => (item !== null && belongs(item) ? item : null));
        else {
          const kept = run.filter((item): item is Item => item !== null && belongs(item)).sort(riskier);
          entries = [...kept, ...Array<null>(run.length - kept.length).fill(null)];
        }
        buffer.push(...entries.slice(skip)); // the skipped ones are already counted in `start`
        skip = 0;
        i = j;
      }
      if (last) exhausted = true;
    };
    // Once a page consumes a list beyond its first read, the next chunk is
    // read while the current one is merged, so Redis round trips overlap the
    // valuation work instead of adding to it.
    let prefetched: Promise<Chunk> | null = null;
    let reads = 0;
    const source: Source = {
      key,
      consumed: start,
      ready: () => {
        dropPassedOver();
        return buffer.length > 0 || exhausted;
      },
      head: () => buffer[0] ?? undefined,
      fill: async () => {
        for (;;) {
          dropPassedOver();
          if (buffer.length > 0 || exhausted) return;
          const current = await (prefetched ?? readChunk());
          prefetched = null;
          if (!current.last && reads++ > 0) {
            prefetched = readChunk();
            prefetched.catch(() => undefined); // awaited by the next fill, if the page gets there
          }
          use(current);
        }
      },
      take: () => {
        if (buffer.shift()) source.consumed++;
      },
    };
    return source;
  }

  /** Multi-symbol accounts and holders of unmarked symbols: read all, sorted exactly, served by offset. */
  private materialisedSource(key: string, marks: Marks, consumed: Map<string, number>, unmarkedSymbols: string[]): Source {
    const { redis, risk } = this.deps;
    let sorted: Item[] | null = null;
    const source: Source = {
      key,
      consumed: consumed.get(key) ?? 0,
      ready: () => sorted !== null,
      head: () => sorted?.[source.consumed],
      fill: async () => {
        if (sorted) return;
        const lists = await Promise.all([
          redis.smembers(risk.multi),
          ...unmarkedSymbols.flatMap((s) => [redis.zrange(risk.long(s), 0, -1), redis.zrange(risk.short(s), 0, -1)]),
        ]);
        const ids = [...new Set(lists.flat().map(accountOf))];
        const items = await this.read(ids, marks);
        const unmarked = new Set(unmarkedSymbols);
        sorted = items
          .filter((item): item is Item => item !== null && item.account.positions.size > 0)
          .filter((item) => item.account.positions.size > 1 || [...item.account.positions.keys()].some((s) => unmarked.has(s)))
          .sort(riskier);
      },
      take: () => {
        source.consumed++;
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
  private readonly cache = new Map<number, Item | null>();

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

  private async read(ids: number[], marks: Marks): Promise<(Item | null)[]> {
    const { redis, keys, rates } = this.deps;
    const rev = this.cacheRev;
    // What the cache holds is taken now: another page may clear it (a new revision) while this one reads.
    const found = new Map<number, Item | null>();
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
function onlyPosition(item: Item, symbol: string, side: 'long' | 'short'): boolean {
  const ps = item.account.positions;
  const p = ps.get(symbol);
  return ps.size === 1 && p !== undefined && p.quantity.isPos() === (side === 'long');
}

const BAND: Record<MarginStatus, number> = { liquidatable: 0, margin_call: 1, healthy: 2 };
/** Statuses get safer down the list: liquidatable, then margin call, then healthy. */
function isPast(status: MarginStatus, wanted: MarginStatus): boolean {
  return BAND[status] > BAND[wanted];
}

async function headOf(sources: Source[]): Promise<{ item: Item; source: Source } | null> {
  // Only sources whose buffers ran dry read, and they read at the same time.
  const dry = sources.filter((s) => !s.ready());
  if (dry.length > 0) await Promise.all(dry.map((s) => s.fill()));
  let best: { item: Item; source: Source } | null = null;
  for (const source of sources) {
    const item = source.head();
    if (item && (!best || riskier(item, best.item) < 0)) best = { item, source };
  }
  return best;
}

function toRow({ accountId, margin: m }: Item): ReportRow {
  return {
    account_id: accountId,
    balance: str(m.balance),
    equity: str(m.equity),
    notional: str(m.notional),
    initial_margin: str(m.initialMargin),
    maintenance_margin: str(m.maintenanceMargin),
    margin_utilisation_pct: m.utilisationPct === null ? null : str(m.utilisationPct),
    status: m.status,
    liquidation_risk: m.status === 'liquidatable',
  };
}

function encodeCursor(sources: Source[]): string {
  const state: Record<string, number> = {};
  for (const s of sources) if (s.consumed > 0) state[s.key] = s.consumed;
  return Buffer.from(JSON.stringify(state)).toString('base64url');
}

function decodeCursor(cursor: string | null): Map<string, number> {
  if (cursor === null) return new Map();
  try {
    const state = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (typeof state !== 'object' || state === null || Array.isArray(state)) throw badCursor();
    const entries = Object.entries(state as Record<string, unknown>);
    if (!entries.every(([, v]) => Number.isSafeInteger(v) && (v as number) >= 0)) throw badCursor();
    return new Map(entries as [string, number][]);
  } catch {
    throw badCursor();
  }
}
