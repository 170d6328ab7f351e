/**
 * Funding payments (POST /funding): every account holding a symbol pays
 * q · m · r at the event's mark m and rate r (longs pay shorts when r > 0),
 * as one FUNDING ledger row per holder, then every account the payments put
 * under maintenance is liquidated.
 *
 * 1. The event is recorded first (`fundings`, status running, with the
 *    symbol's latest committed mark): from then on it is finished whatever
 *    happens; a crash leaves it to recovery, which finishes it at the same
 *    mark before the engine reports ready.
 * 2. The holders are the symbol's two risk-index lists. Each is charged by a
 *    pure decision through the AccountRunner: in chunks on its bulk path
 *    (`runMany`: one peek, one INSERT, batched applies per chunk), and the
 *    holders that path leaves (busy in this process, locked by another
 *    writer, refused at the ledger's keys) one by one, like any other
 *    write. The ledger's unique index on (funding_id, account_id) makes a
 *    holder's row unique: a re-run skips the holders already charged, and a
 *    row that collides anyway is one already booked.
 * 3. The accounts the payments endangered are liquidated (reason 'funding'),
 *    found with the risk index at the current mark, as a tick finds them.
 * 4. The event is finished in one transaction: totals summed from its rows,
 *    its history row (market_events, also an event on GET /events). A repeat
 *    of the request answers from that row.
 */
import type { Logger } from 'pino';
import { D, type Dec, str } from '../domain/decimal.js';
import { DependencyUnavailable, EngineError, marketNotFound } from '../domain/errors.js';
import { fundingDelta } from '../domain/funding.js';
import { marginTotals, marketRules, type RiskParams } from '../domain/margin.js';
import { bootMarkerPresent, RedisStateLost, type MarkBook } from '../store/mark-book.js';
import { chargedAccounts, finishFunding, openFunding, runningFundings, touchFunding, type FundingRow } from '../store/fundings.js';
import type { Sql } from '../store/postgres.js';
import type { KeySpace, RedisClient } from '../store/redis.js';
import { endangeredBy, holdersOf, type RiskKeys } from '../store/risk-index.js';
import type { Snapshot } from './account-gate.js';
import { AlreadyBooked, type AccountRunner, type Decision } from './account-runner.js';
import { postgresCall, redisCall } from './dependencies.js';
import type { LiquidationService } from './liquidation.js';
import { paymentMarginCall } from './margin-calls.js';

/** The answer to POST /funding. */
export interface FundingResult {
  readonly symbol: string;
  readonly rate: string;
  readonly funding_id: string;
  readonly mark_price: string;
  readonly accounts: number;
  readonly paid: string;
  readonly received: string;
  readonly liquidated: number[];
}

export interface FundingCommand {
  readonly fundingId: string;
  readonly symbol: string;
  readonly rate: Dec;
  /** The mark the event is charged at (recorded when it was opened). */
  readonly mark: Dec;
  readonly actor: string | null;
}

/** What one holder's row booked: the change to its balance (negative: paid). */
export interface FundingCharge {
  readonly accountId: number;
  readonly delta: Dec;
}

/**
 * One holder's payment, decided on its snapshot: its position in the symbol
 * now (none: nothing to book, it closed since the holders were listed), the
 * signed change q · m · r off its balance.
 */
export function fundingDecision(cmd: FundingCommand, { account, marks, markets }: Snapshot, riskDefaults: RiskParams): Decision<FundingCharge | null> {
  const position = account.positions.get(cmd.symbol);
  if (position === undefined) return { kind: 'answer', result: null };
  const delta = fundingDelta(position.quantity, cmd.mark, cmd.rate);
  const balance = account.balance.plus(delta);
  // A payment that takes the account below initial (or maintenance) margin, at the marks it is decided on.
  const why = { cause: 'funding', symbol: cmd.symbol, fundingId: cmd.fundingId, seq: account.seq + 1 } as const;
  // Valued once: for the margin call, and (the payment moves only the balance) for the risk index after it.
  const rules = marketRules(markets, riskDefaults);
  const totals = marginTotals(account, marks, rules);
  const marginCall = paymentMarginCall(account.accountId, account, delta, marks, rules, why, totals);
  return {
    kind: 'book',
    rows: [
      {
        accountId: account.accountId,
        seq: account.seq + 1,
        kind: 'FUNDING',
        symbol: cmd.symbol,
        price: str(cmd.mark),
        positionQuantity: str(position.quantity),
        amount: str(delta),
        fundingId: cmd.fundingId,
        balance: str(balance),
        actor: cmd.actor,
      },
    ],
    after: { balance, positions: account.positions },
    totals: { ...totals, equity: totals.equity.plus(delta) },
    marginCall,
    result: () => ({ accountId: account.accountId, delta }),
  };
}

export interface FundingDeps {
  readonly redis: RedisClient;
  readonly sql: Sql;
  readonly keys: KeySpace;
  readonly risk: RiskKeys;
  readonly runner: AccountRunner;
  readonly markBook: MarkBook;
  readonly liquidation: LiquidationService;
  /** Risk parameters of a symbol no market lists. */
  readonly riskDefaults: RiskParams;
  readonly committer: { readonly unavailable: boolean };
  readonly timeoutMs: number;
  /** Holders charged at once on the one-by-one path (each one operation through the runner). */
  readonly concurrency?: number;
  /** Holders per bulk write (one read, one statement, a few apply calls). */
  readonly chunk?: number;
  readonly log: Logger;
}

/** Holders in flight at once on the one-by-one path: enough to fill every group commit and Redis batch. */
const CONCURRENCY = 1024;
/** Holders per bulk write. */
const CHUNK = 500;
/** Bulk writes in flight at once: one being decided while others wait on PostgreSQL or Redis. */
const CHUNKS_IN_FLIGHT = 2;
/** Passes over the holders a store failure left uncharged, before the run gives up (and recovery takes it). */
const MAX_PASSES = 4;
/** Longest wait, between passes, for PostgreSQL to be reachable again. */
const STORES_BACK_MS = 5000;
/** How often a running event shows it is alive. */
const TOUCH_MS = 1000;
/** A running event not touched for this long has lost its process: any process's recovery watch finishes it. */
const ORPHANED_MS = 5000;

export function fundingAnswer(row: FundingRow): FundingResult {
  return {
    symbol: row.symbol,
    rate: new D(row.rate).toString(),
    funding_id: row.funding_id,
    mark_price: new D(row.mark_price).toString(),
    accounts: Number(row.accounts ?? 0),
    paid: new D(row.paid ?? 0).toString(),
    received: new D(row.received ?? 0).toString(),
    liquidated: (row.liquidated ?? []).map(Number),
  };
}

export class FundingService {
  /** Events running in this process, by id: a repeat of the request joins the run. */
  private readonly active = new Map<string, Promise<FundingResult>>();
  /** Events whose run failed here: the next recovery pass finishes them whatever their age. */
  private readonly unfinished = new Set<string>();

  constructor(private readonly deps: FundingDeps) {}

  /** Events this process knows are unfinished. */
  get pending(): number {
    return this.unfinished.size;
  }

  async fund(symbol: string, rate: Dec, fundingId: string, actor: string | null): Promise<FundingResult> {
    const { redis, sql, keys, committer, timeoutMs } = this.deps;
    if (committer.unavailable) throw new DependencyUnavailable('postgres');
    // Redis must answer, holding the engine's state, before anything is recorded.
    if (!(await redisCall(() => bootMarkerPresent(redis, keys)))) throw new RedisStateLost();
    const opened = await postgresCall(() => openFunding(sql, fundingId, symbol, str(rate), actor), timeoutMs);
    if (opened.kind === 'not_listed') throw marketNotFound(symbol);
    if (opened.kind === 'no_mark') throw new EngineError('NO_MARK_PRICE', `market ${symbol} has no mark price yet; post one first`, { symbol });
    const row = opened.row;
    if (opened.kind === 'existing') {
      if (row.symbol !== symbol || !new D(row.rate).eq(rate)) {
        throw new EngineError('FUNDING_CONFLICT', `funding_id ${JSON.stringify(fundingId)} was already used with different parameters`, {
          funding_id: fundingId,
          symbol: row.symbol,
          rate: new D(row.rate).toString(),
        });
      }
      if (row.status === 'done') return fundingAnswer(row);
    }
    try {
      return await this.run(row);
    } catch (error) {
      if (error instanceof EngineError && error.code !== 'SERVICE_UNAVAILABLE' && error.code !== 'ACCOUNT_BUSY') throw error;
      this.deps.log.warn({ err: error, fundingId }, 'funding run failed midway; recovery will finish it');
      // Recorded, and partly paid: recovery finishes it. Not "nothing changed".
      throw new EngineError(
        'SERVICE_UNAVAILABLE',
        `funding ${fundingId} is recorded but a store failed before every holder was charged; recovery finishes it, and the same request then answers with its totals`,
        { funding_id: fundingId, outcome: 'pending' },
      );
    }
  }

  /**
   * Finishes running events: this process's failed ones and any orphaned for
   * ORPHANED_MS (with `all`, every one: at start-up, before the engine
   * serves). Returns how many are left unfinished.
   */
  async finishPending(all: boolean): Promise<number> {
    const { sql, timeoutMs, log } = this.deps;
    const rows = await postgresCall(() => runningFundings(sql, all ? 0 : ORPHANED_MS, [...this.unfinished]), timeoutMs);
    for (const id of this.unfinished) if (!rows.some((r) => r.funding_id === id)) this.unfinished.delete(id);
    let left = 0;
    for (const row of rows) {
      if (this.active.has(row.funding_id)) continue;
      try {
        const done = await this.run(row);
        log.info({ fundingId: done.funding_id, symbol: done.symbol, accounts: done.accounts }, 'finished a funding event left running');
      } catch (error) {
        left++;
        log.warn({ fundingId: row.funding_id, err: (error as Error).message }, 'could not finish a running funding event yet');
      }
    }
    return left;
  }

  private run(row: FundingRow): Promise<FundingResult> {
    const running = this.active.get(row.funding_id);
    if (running) return running;
    const run = this.execute(row).then(
      (result) => {
        this.unfinished.delete(row.funding_id);
        return result;
      },
      (error: unknown) => {
        this.unfinished.add(row.funding_id);
        throw error;
      },
    );
    const tracked = run.finally(() => this.active.delete(row.funding_id));
    this.active.set(row.funding_id, tracked);
    return tracked;
  }

  /** Waits for PostgreSQL to be reachable again after a failed pass. */
  private async storesBack(): Promise<void> {
    const { committer } = this.deps;
    await new Promise((r) => setTimeout(r, 100));
    await waitUntil(() => !committer.unavailable, STORES_BACK_MS);
  }

  private async execute(row: FundingRow): Promise<FundingResult> {
    const { redis, sql, risk, runner, markBook, liquidation, timeoutMs, log } = this.deps;
    const started = performance.now();
    const cmd: FundingCommand = { fundingId: row.funding_id, symbol: row.symbol, rate: new D(row.rate), mark: new D(row.mark_price), actor: row.actor };
    const touch = setInterval(() => void touchFunding(sql, cmd.fundingId).catch(() => undefined), TOUCH_MS);
    try {
      let todo = await redisCall(() => holdersOf(redis, risk, cmd.symbol));
      let skipped = 0;
      /** Holders charged on the bulk path (the rest went one by one). */
      let bulk = 0;
      /** Redis applies still running for charges answered at their commit (each resolves, never rejects). */
      const landings: Promise<boolean>[] = [];
      for (let pass = 1; ; pass++) {
        // A re-run (after a crash, a failure, or a pass that left holders) skips the holders already charged.
        const charged = await postgresCall(() => chargedAccounts(sql, cmd.fundingId), timeoutMs);
        if (pass === 1) skipped = charged.size;
        if (charged.size > 0) todo = todo.filter((id) => !charged.has(id));
        const failed: number[] = [];
        let firstError: unknown = null;
        // The bulk path first, chunk by chunk, a few chunks in flight; what it leaves goes one by one below.
        const chunks: number[][] = [];
        for (let i = 0; i < todo.length; i += this.deps.chunk ?? CHUNK) chunks.push(todo.slice(i, i + (this.deps.chunk ?? CHUNK)));
        const left: number[] = [];
        await inPool(chunks, CHUNKS_IN_FLIGHT, async (ids) => {
          const outcome = await runner.runMany(ids, (s) => fundingDecision(cmd, s, this.deps.riskDefaults));
          bulk += outcome.booked;
          for (const id of outcome.left) left.push(id);
          for (const id of outcome.failed) failed.push(id);
          if (outcome.error !== null) firstError ??= outcome.error;
        });
        await inPool(left, this.deps.concurrency ?? CONCURRENCY, async (accountId) => {
          try {
            const outcome = await runner.run(accountId, (s) => fundingDecision(cmd, s, this.deps.riskDefaults), { mode: 'optimistic' });
            // Answered at its commit, the apply may still be running: waited for below.
            if (outcome.answeredAtCommit) landings.push(outcome.landed);
          } catch (error) {
            // Booked by an earlier run whose commit landed after its holders were listed.
            if (error instanceof AlreadyBooked) return;
            failed.push(accountId);
            firstError ??= error;
          }
        });
        if (failed.length === 0) break;
        // A store that stalled under the load (a commit past its deadline trips the breaker):
        // wait for it to answer again and charge the rest, a few times before giving up.
        if (pass >= MAX_PASSES) throw firstError;
        log.warn({ fundingId: cmd.fundingId, failed: failed.length, pass, err: (firstError as Error).message }, 'funding: holders not charged in this pass; retrying them');
        await this.storesBack();
        todo = failed;
      }
      const chargedMs = performance.now() - started;
      // Every payment is in Redis, and in the risk index, before the index is read
      // (an apply that failed leaves its account to the recovery watch, which re-indexes it).
      await Promise.all(landings);
      const mark = (await redisCall(() => markBook.current())).get(cmd.symbol) ?? cmd.mark;
      const endangered = await redisCall(() => endangeredBy(redis, risk, cmd.symbol, mark));
      const liquidated: number[] = [];
      const results = await Promise.allSettled(
        endangered.map(async (accountId) => {
          if ((await liquidation.liquidate(accountId, { reason: 'funding', symbol: cmd.symbol, price: mark, actor: cmd.actor })) !== null) liquidated.push(accountId);
        }),
      );
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      liquidated.sort((a, b) => a - b);
      const done = await postgresCall(() => finishFunding(sql, cmd.fundingId, liquidated), timeoutMs);
      const answer = fundingAnswer(done);
      log.info(
        {
          fundingId: cmd.fundingId,
          symbol: cmd.symbol,
          rate: answer.rate,
          accounts: answer.accounts,
          skipped,
          bulk,
          liquidated: liquidated.length,
          chargeMs: Math.trunc(chargedMs),
          ms: Math.trunc(performance.now() - started),
        },
        'funding paid',
      );
      return answer;
    } finally {
      clearInterval(touch);
    }
  }
}

/** Resolves once the committer's breaker is closed again (or after STORES_BACK_MS, letting the next pass fail fast). */
async function waitUntil(ok: () => boolean, ms: number): Promise<void> {
  const deadline = performance.now() + ms;
  while (!ok() && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}

/** Runs `work` on every item, at most `n` at once; the first failure is thrown once every started item has settled. */
async function inPool<T>(items: readonly T[], n: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | null = null;
  const worker = async () => {
    while (failure === null && next < items.length) {
      const item = items[next++]!;
      try {
        await work(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  if (failure !== null) throw (failure as { error: unknown }).error;
}
