/**
 * The margin report's sources: lists of accounts, each served riskiest first,
 * that a page merges (see margin-report.ts). IndexSource reads one of the risk
 * index's sorted sets in chunks from the risky end, or from where the
 * previous page's last row stands.
 */
import type { RiskSummary } from '../domain/margin.js';
import type { StoredAccount } from '../store/account-state.js';
import { accountOf } from '../store/risk-index.js';
import { compareKeys, compareUtilisation, type ReportKey } from './report-cursor.js';
import type { RedisClient } from '../store/redis.js';

/** One account of the report, valued at the page's marks. */
export interface ReportEntry {
  readonly accountId: number;
  readonly account: StoredAccount;
  readonly margin: RiskSummary;
}

/** Riskiest first: null utilisation (equity ≤ 0 with positions), then utilisation descending, then account id. */
export function riskier(a: ReportEntry, b: ReportEntry): number {
  return compareUtilisation(a.margin.orderPct, b.margin.orderPct) || a.accountId - b.accountId;
}

/** An entry's place in the report's order (what a cursor records). */
export function keyOf(entry: ReportEntry): ReportKey {
  return { utilisationPct: entry.margin.orderPct, accountId: entry.accountId };
}

/** Whether `entry` comes after `key` in the report's order (null: after nothing, so true). */
export function comesAfter(entry: ReportEntry, key: ReportKey | null): boolean {
  return key === null || compareKeys(keyOf(entry), key) > 0;
}

export interface Source {
  /** Reads more when the buffer has run dry (the merge awaits only sources that need it). */
  fill(): Promise<void>;
  /** True when head() can answer without reading. */
  ready(): boolean;
  /** The next entry, or undefined when the source is exhausted (only meaningful when ready). */
  head(): ReportEntry | undefined;
  take(): void;
}

/** Values accounts by id, in the order asked (null: no such account). */
export type Valuer = (ids: number[]) => Promise<(ReportEntry | null)[]>;

/** Longest run of equal index scores read whole and sorted exactly. */
export const RUN_MAX = 1024;

/** One read of an index list: members with their scores, their accounts valued, and how to order them. */
export interface Chunk {
  readonly members: readonly (readonly [string, string])[];
  readonly entries: readonly (ReportEntry | null)[];
  /** The score of a run too long to sort that this chunk ends inside, if any. */
  readonly longRun: string | null;
  /** The list ends with this chunk. */
  readonly last: boolean;
}

/**
 * A chunk in serving order: each run of equal scores sorted exactly, with
 * the entries that are not served (null, or not `serves`) as nulls at the end
 * of their run, except the run scored `longRun`, kept in set order. Nulls
 * are passed over.
 */
export function inServingOrder(chunk: Chunk, serves: (entry: ReportEntry) => boolean): (ReportEntry | null)[] {
  const { members, entries, longRun } = chunk;
  const out: (ReportEntry | null)[] = [];
  for (let i = 0; i < members.length; ) {
    const score = members[i]![1];
    let j = i;
    while (j < members.length && members[j]![1] === score) j++;
    const run = entries.slice(i, j);
    let ordered: (ReportEntry | null)[];
    if (score === longRun) ordered = run.map((e) => (e !== null && serves(e) ? e : null));
    else {
      const kept = run.filter((e): e is ReportEntry => e !== null && serves(e)).sort(riskier);
      ordered = [...kept, ...Array<null>(run.length - kept.length).fill(null)];
    }
    out.push(...ordered);
    i = j;
  }
  return out;
}

export interface IndexSourceOptions {
  /** The key of the last row the previous page showed (null: the first page); what does not come after it is passed over. */
  readonly after: ReportKey | null;
  /** No entry after `after` scores below this (see seekScore in report-cursor.ts); −Infinity: read from the start. */
  readonly from: number;
  /** Members per read after the first. */
  readonly chunk: number;
  /** Whether an entry of this list is served by this source (it may have moved to another). */
  readonly belongs: (entry: ReportEntry) => boolean;
  readonly value: Valuer;
  /** Longest run of equal scores sorted exactly (RUN_MAX; tests make it small). */
  readonly runMax?: number;
}

/** A score as a range bound for Redis. */
const bound = (x: number) => (x === Infinity ? '+inf' : x === -Infinity ? '-inf' : String(x));

/**
 * A sorted set read in chunks from the risky end. Scores are doubles, so a
 * run of equal scores (up to runMax members) is read whole and ordered
 * exactly; members that belong to another source (or no longer exist) go to
 * the end of their run. A longer run is served in the set's own order (by
 * account id): exact whenever its members' thresholds are truly equal, as
 * they are in practice — thresholds that differ beyond a double's 15–17
 * digits in a run of over runMax accounts may come out in id order.
 *
 * A later page starts at the first run scored `from` or more and passes over
 * what does not come after `after`. Where that start is a long run, its
 * members are taken to share the utilisation of the first of them that
 * belongs here: a run riskier than `after` is skipped whole, a run at
 * `after`'s utilisation is entered after `after`'s account id (found by
 * binary search on rank), so resuming never re-reads what earlier pages
 * showed.
 *
 * Reading (position, readChunk) and serving (buffer, take) are separate: a
 * chunk may be read ahead while the previous one is served. Chunks are read
 * strictly one after another, so the read-side state moves in order.
 */
export class IndexSource implements Source {
  private readonly runMax: number;
  private readonly serves: (entry: ReportEntry) => boolean;
  // Read side.
  /** Rank of the next member to read (-1: not positioned yet). */
  private next = -1;
  /** Score of a run too long to sort, while the reads are inside it. */
  private longRun: string | null = null;
  /** The next read is a later page's first, at the start of a run: it may have to move on (see enter). */
  private entering = false;
  /**
   * The first read is small: a page often barely touches a list (flat
   * accounts only come at the end; after a big move one side of a symbol is
   * far safer than the other), and what it reads but does not use is read
   * again by the next page. Lists the page does consume then read full chunks.
   */
  private size: number;
  private reads = 0;
  private prefetched: Promise<Chunk> | null = null;
  // Serving side.
  private readonly buffer: (ReportEntry | null)[] = [];
  private exhausted = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly zkey: string,
    private readonly options: IndexSourceOptions,
  ) {
    this.size = Math.min(32, options.chunk);
    this.runMax = options.runMax ?? RUN_MAX;
    const { after, belongs } = options;
    this.serves = after === null ? belongs : (entry) => belongs(entry) && comesAfter(entry, after);
  }

  ready(): boolean {
    this.dropPassedOver();
    return this.buffer.length > 0 || this.exhausted;
  }

  head(): ReportEntry | undefined {
    return this.buffer[0] ?? undefined;
  }

  take(): void {
    this.buffer.shift();
  }

  async fill(): Promise<void> {
    for (;;) {
      this.dropPassedOver();
      if (this.buffer.length > 0 || this.exhausted) return;
      const current = await (this.prefetched ?? this.readChunk());
      this.prefetched = null;
      // Once a page consumes a list beyond its first read, the next chunk is
      // read while the current one is merged, so Redis round trips overlap the
      // valuation work instead of adding to it.
      if (!current.last && this.reads++ > 0) {
        this.prefetched = this.readChunk();
        this.prefetched.catch(() => undefined); // awaited by the next fill, if the page gets there
      }
      this.buffer.push(...inServingOrder(current, this.serves));
      if (current.last) this.exhausted = true;
    }
  }

  private dropPassedOver(): void {
    while (this.buffer.length > 0 && this.buffer[0] === null) this.buffer.shift();
  }

  private runLength(score: string): Promise<number> {
    return this.redis.zcount(this.zkey, score, score);
  }

  /** Finds where to start: the first run scored `from` or more (the first read then looks at what it starts in). */
  private async position(): Promise<void> {
    const { after, from } = this.options;
    this.next = after !== null && from > -Infinity ? await this.redis.zcount(this.zkey, '-inf', `(${bound(from)}`) : 0;
    this.entering = after !== null;
  }

  /**
   * The first read of a later page starts at a run's start. When that run is
   * too long to sort, it is passed whole, entered at `after`'s account id, or
   * served from its start (see the class comment), and read again from there.
   */
  private async enter(chunk: Chunk, start: number, after: ReportKey): Promise<Chunk | null> {
    const { members, entries, longRun } = chunk;
    if (longRun === null || members[0]?.[1] !== longRun) return chunk; // sorted exactly; what is not after `after` passed over
    const first = entries.find((e): e is ReportEntry => e !== null && this.options.belongs(e));
    if (!first) return chunk; // nothing to go by: passed over member by member
    const c = compareUtilisation(first.margin.orderPct, after.utilisationPct);
    if (c > 0) return chunk; // safer than `after`: all of it is still to come
    const end = await this.redis.zcount(this.zkey, '-inf', longRun);
    if (c < 0) {
      this.next = end; // riskier than `after`: shown already; look at the next run the same way
      this.entering = true;
    } else {
      this.next = await this.firstAbove(start, end, after.accountId);
    }
    this.longRun = this.next < end ? longRun : null; // entered inside it: served on in set order
    return null;
  }

  /** The first rank in [lo, hi) whose member's account id is above `accountId` (hi if none): ids rise along a run. */
  private async firstAbove(lo: number, hi: number, accountId: number): Promise<number> {
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      const [m] = await this.redis.zrange(this.zkey, mid, mid);
      if (m !== undefined && accountOf(m) > accountId) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** Reads the next chunk (members, run completion, accounts valued) and advances the read position. */
  private async readChunk(): Promise<Chunk> {
    if (this.next < 0) await this.position();
    for (;;) {
      const start = this.next;
      const chunk = await this.readAt();
      const { after } = this.options;
      if (!this.entering || after === null) return chunk;
      this.entering = false;
      const entered = await this.enter(chunk, start, after);
      if (entered) return entered;
    }
  }

  private async readAt(): Promise<Chunk> {
    const { redis, zkey } = this;
    const raw = await redis.zrange(zkey, this.next, this.next + this.size - 1, 'WITHSCORES');
    const members: [string, string][] = [];
    for (let i = 0; i < raw.length; i += 2) members.push([raw[i]!, raw[i + 1]!]);
    const full = members.length === this.size;
    this.size = this.options.chunk;
    if (full) {
      const last = members[members.length - 1]![1];
      if (last !== this.longRun && (await this.runLength(last)) <= this.runMax) {
        // Complete the last score's run, so no sortable run is split across chunks.
        const have = new Set(members.map(([m]) => m));
        for (const m of await redis.zrangebyscore(zkey, last, last)) if (!have.has(m)) members.push([m, last]);
      } else {
        this.longRun = last;
      }
    }
    this.next += members.length;
    const entries = await this.options.value(members.map(([m]) => accountOf(m)));
    const chunkLongRun = this.longRun;
    if (members.length > 0 && members[members.length - 1]![1] !== this.longRun) this.longRun = null;
    return { members, entries, longRun: chunkLongRun, last: !full };
  }
}
