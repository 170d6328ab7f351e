/**
 * The margin report's sources: lists of accounts, each served riskiest first,
 * that a page merges (see margin-report.ts). IndexSource reads one of the risk
 * index's sorted sets in chunks from the risky end.
 */
import type { Redis } from 'ioredis';
import type { RiskSummary } from '../domain/margin.js';
import type { StoredAccount } from '../store/account-state.js';
import { accountOf } from '../store/risk-index.js';

/** One account of the report, valued at the page's marks. */
export interface ReportEntry {
  readonly accountId: number;
  readonly account: StoredAccount;
  readonly margin: RiskSummary;
}

/** Riskiest first: null utilisation (equity ≤ 0 with positions), then utilisation descending, then account id. */
export function riskier(a: ReportEntry, b: ReportEntry): number {
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

export interface Source {
  /** The cursor's name for this source. */
  readonly key: string;
  /** Consumed so far (the cursor's record for this source). */
  consumed: number;
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
 * the entries that do not belong (null, or not `belongs`) as nulls at the end
 * of their run, except the run scored `longRun`, kept in set order. The first
 * `skip` of the first run are left out (an earlier page consumed them).
 * A null still counts as consumed when it is passed over.
 */
export function inServingOrder(chunk: Chunk, belongs: (entry: ReportEntry) => boolean, skip = 0): (ReportEntry | null)[] {
  const { members, entries, longRun } = chunk;
  const out: (ReportEntry | null)[] = [];
  for (let i = 0; i < members.length; ) {
    const score = members[i]![1];
    let j = i;
    while (j < members.length && members[j]![1] === score) j++;
    const run = entries.slice(i, j);
    let ordered: (ReportEntry | null)[];
    if (score === longRun) ordered = run.map((e) => (e !== null && belongs(e) ? e : null));
    else {
      const kept = run.filter((e): e is ReportEntry => e !== null && belongs(e)).sort(riskier);
      ordered = [...kept, ...Array<null>(run.length - kept.length).fill(null)];
    }
    out.push(...(i === 0 ? ordered.slice(skip) : ordered));
    i = j;
  }
  return out;
}

export interface IndexSourceOptions {
  /** Members an earlier page consumed (the cursor's record). */
  readonly start: number;
  /** Members per read after the first. */
  readonly chunk: number;
  /** Whether an entry of this list is served by this source (it may have moved to another). */
  readonly belongs: (entry: ReportEntry) => boolean;
  readonly value: Valuer;
  /** Longest run of equal scores sorted exactly (RUN_MAX; tests make it small). */
  readonly runMax?: number;
}

/**
 * A sorted set read in chunks from the risky end. Scores are doubles, so a
 * run of equal scores (up to runMax members) is read whole and ordered
 * exactly; members that belong to another source (or no longer exist) go to
 * the end of their run. A longer run is served in the set's own order (by
 * account id): exact whenever its members' thresholds are truly equal, as
 * they are in practice — thresholds that differ beyond a double's 15–17
 * digits in a run of over runMax accounts may come out in id order.
 * `consumed` counts members in this order.
 *
 * Reading (position, readChunk) and serving (buffer, take) are separate: a
 * chunk may be read ahead while the previous one is served. Chunks are read
 * strictly one after another, so the read-side state moves in order.
 */
export class IndexSource implements Source {
  consumed: number;
  private readonly runMax: number;
  // Read side.
  /** Rank of the next member to read (-1: not positioned yet). */
  private next = -1;
  /** Score of a run too long to sort, while the reads are inside it. */
  private longRun: string | null = null;
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
  /** Entries of the first run that earlier pages consumed (already counted in `start`). */
  private skip = 0;
  private readonly buffer: (ReportEntry | null)[] = [];
  private exhausted = false;

  constructor(
    private readonly redis: Redis,
    readonly key: string,
    private readonly zkey: string,
    private readonly options: IndexSourceOptions,
  ) {
    this.consumed = options.start;
    this.size = Math.min(32, options.chunk);
    this.runMax = options.runMax ?? RUN_MAX;
  }

  ready(): boolean {
    this.dropPassedOver();
    return this.buffer.length > 0 || this.exhausted;
  }

  head(): ReportEntry | undefined {
    return this.buffer[0] ?? undefined;
  }

  take(): void {
    if (this.buffer.shift()) this.consumed++;
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
      this.buffer.push(...inServingOrder(current, this.options.belongs, this.skip));
      this.skip = 0;
      if (current.last) this.exhausted = true;
    }
  }

  private dropPassedOver(): void {
    while (this.buffer.length > 0 && this.buffer[0] === null) {
      this.buffer.shift();
      this.consumed++;
    }
  }

  private runLength(score: string): Promise<number> {
    return this.redis.zcount(this.zkey, score, score);
  }

  /** Finds where to resume: at the start of the run holding the first unconsumed member (or at it, inside a long run). */
  private async position(): Promise<void> {
    const { start } = this.options;
    this.next = start;
    if (start === 0) return;
    const at = await this.redis.zrange(this.zkey, start, start, 'WITHSCORES');
    if (at.length === 0) return; // past the end
    const score = at[1]!;
    if ((await this.runLength(score)) > this.runMax) {
      this.longRun = score; // served in set order: resume right here
      return;
    }
    this.next = await this.redis.zcount(this.zkey, '-inf', `(${score}`); // where the run holding it starts
    this.skip = start - this.next;
  }

  /** Reads the next chunk (members, run completion, accounts valued) and advances the read position. */
  private async readChunk(): Promise<Chunk> {
    const { redis, zkey } = this;
    if (this.next < 0) await this.position();
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
