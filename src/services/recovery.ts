/**
 * Keeping Redis equal to what PostgreSQL's ledger implies.
 *
 * - start(): at start-up, rebuild Redis if it lost the engine's state (no boot
 *   marker), otherwise catch up any account whose Redis sequence is behind
 *   its ledger (a process died between commit and apply).
 * - A watch polls the boot marker; when Redis loses its data while the engine
 *   runs (a flush, a restart without persistence), the engine reports
 *   not-ready, rebuilds, and serves again. Requests meanwhile answer 503.
 * - rebuild(): replaces everything under the key prefix with the state the
 *   ledger's last rows record: balances, positions, client orders, marks,
 *   the risk index, and finally the boot marker.
 *
 * (reconcile.ts lists every difference between Redis and the ledger.)
 *
 * One engine rebuilds at a time (a Redis lock outside the key prefix); the
 * others wait for the marker.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { str } from '../domain/decimal.js';
import { liquidationThresholds } from '../domain/liquidation.js';
import { marketRules } from '../domain/margin.js';
import type { MarketParams } from '../domain/markets.js';
import { bootMarkerPresent, parseMarkets, parseMarks, type MarkBook } from '../store/mark-book.js';
import { BOOT_FIELD, EPOCH_FIELD, marketField, marketVersionField, markVersionField } from '../store/marks-hash.js';
import type { Sql } from '../store/postgres.js';
import { bySlot, scanAll, type KeySpace, type RedisClient } from '../store/redis.js';
import { member, queueIndexUpdate, tieredEntries, type RiskKeys } from '../store/risk-index.js';
import { expectedState } from './ledger-state.js';
import { catchUp, reindexAccount } from './ledger-sync.js';

export interface RecoveryDeps {
  readonly redis: RedisClient;
  readonly sql: Sql;
  readonly keys: KeySpace;
  readonly risk: RiskKeys;
  readonly riskDefaults: MarketParams;
  readonly markBook: MarkBook;
  readonly timeoutMs: number;
  readonly log: Logger;
}

export interface RebuildStats {
  readonly accounts: number;
  readonly positions: number;
  readonly clientOrders: number;
  readonly marks: number;
  readonly ms: number;
}

const CHUNK = 1000;

export class Recovery {
  private rebuilding: Promise<RebuildStats | null> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stateLost = false;
  /** Accounts whose committed rows did not reach Redis (their apply failed): the watch catches them up. */
  private readonly lagging = new Set<number>();
  /**
   * Finishes committed marks whose sweep did not (and market changes Redis
   * lacks); returns how many sweeps remain. `all`: every one, at start-up.
   * Set by the engine once the liquidation machinery exists.
   */
  finishSweeps: ((all: boolean) => Promise<number>) | null = null;
  /**
   * Finishes funding events left running (a crash or a store failure midway);
   * returns how many remain unfinished. `all`: every one, at start-up. Set by
   * the engine once the funding service exists.
   */
  finishFundings: ((all: boolean) => Promise<number>) | null = null;
  /** Told how many accounts a rebuild has written, of how many (`npm run rebuild` shows it on a terminal). */
  onRebuildProgress: ((done: number, total: number) => void) | null = null;

  constructor(private readonly deps: RecoveryDeps) {}

  /** False while Redis is known to have lost its state or a rebuild runs. */
  get ready(): boolean {
    return !this.stateLost && this.rebuilding === null;
  }

  private get lockKey(): string {
    return `${this.deps.keys.prefix}.rebuild-lock`;
  }

  async start(watchMs = 500): Promise<void> {
    if (!(await this.hasMarker())) await this.rebuildOrWait();
    else await this.catchUpAll();
    // A committed mark whose sweep a crash or an outage interrupted is
    // finished before the engine serves.
    const left = (await this.finishSweeps?.(true)) ?? 0;
    if (left > 0) throw new Error(`${left} committed mark(s) could not be swept; is redis answering?`);
    // Likewise a funding event a crash interrupted: every holder is charged (once) before the engine serves.
    const fundings = (await this.finishFundings?.(true)) ?? 0;
    if (fundings > 0) throw new Error(`${fundings} funding event(s) could not be finished; are the stores answering?`);
    if (watchMs > 0) {
      this.timer = setInterval(() => void this.check(), watchMs);
      this.timer.unref();
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Waits for a running rebuild (used on shutdown). */
  async idle(): Promise<void> {
    await this.rebuilding;
  }

  private async hasMarker(): Promise<boolean> {
    return bootMarkerPresent(this.deps.redis, this.deps.keys);
  }

  private async check(): Promise<void> {
    if (this.rebuilding) return;
    try {
      if (await this.hasMarker()) {
        this.stateLost = false;
        if (this.lagging.size > 0) await this.catchUpLagging();
        await this.finishSweeps?.(false);
        await this.finishFundings?.(false);
        return;
      }
      this.stateLost = true;
      this.deps.log.warn('redis lost the engine state; rebuilding from postgresql');
      await this.rebuildOrWait();
      this.stateLost = false;
      await this.finishSweeps?.(false);
    } catch (error) {
      // Redis or PostgreSQL unreachable: the next check tries again.
      this.deps.log.warn({ err: (error as Error).message }, 'state check failed');
    }
  }

  /** Rebuilds if this engine wins the rebuild lock; otherwise waits for the engine that did. */
  async rebuildOrWait(): Promise<RebuildStats | null> {
    this.rebuilding ??= (async () => {
      try {
        const token = randomUUID();
        for (;;) {
          if (await this.deps.redis.set(this.lockKey, token, 'PX', 120_000, 'NX')) {
            try {
              // Another engine may have finished while we waited for the lock.
              if (await this.hasMarker()) return null;
              return await this.rebuild();
            } finally {
              if ((await this.deps.redis.get(this.lockKey)) === token) await this.deps.redis.del(this.lockKey);
            }
          }
          if (await this.hasMarker()) return null;
          await new Promise((r) => setTimeout(r, 200));
        }
      } finally {
        this.rebuilding = null;
      }
    })();
    return this.rebuilding;
  }

  /** Replaces Redis's state under the prefix with what the ledger implies. Call under the rebuild lock. */
  async rebuild(): Promise<RebuildStats> {
    const started = performance.now();
    const { redis, keys, risk, riskDefaults, log } = this.deps;
    await this.deleteAll();
    const expected = await expectedState(this.deps.sql, keys.clientOrderTtlMs);
    // Marks first (without the boot marker), so thresholds use them.
    const marksHash: Record<string, string> = {};
    for (const [symbol, m] of expected.marks) {
      marksHash[symbol] = m.price;
      marksHash[markVersionField(symbol)] = String(m.version);
    }
    for (const m of expected.markets) {
      marksHash[marketField(m.symbol)] = m.json;
      marksHash[marketVersionField(m.symbol)] = String(m.version);
    }
    marksHash[EPOCH_FIELD] = '1';
    // Every shard's copy.
    await Promise.all(keys.shards.map((k) => redis.hset(k.marks, marksHash)));
    const marks = parseMarks(marksHash);
    const rules = marketRules(parseMarkets(marksHash, riskDefaults), riskDefaults);
    let positions = 0;
    let clientOrders = 0;
    const entries = [...expected.accounts];
    for (let i = 0; i < entries.length; i += CHUNK) {
      // One pipeline per shard (its keys share the shard's slot), the shards in parallel.
      const pipelines = keys.shards.map(() => redis.pipeline());
      for (const [accountId, a] of entries.slice(i, i + CHUNK)) {
        const p = pipelines[keys.shardOf(accountId)]!;
        const fields: Record<string, string> = { seq: String(a.seq), bal: str(a.balance) };
        for (const [symbol, pos] of a.positions) {
          fields[`q:${symbol}`] = str(pos.quantity);
          fields[`e:${symbol}`] = str(pos.entryPrice);
        }
        p.hset(keys.account(accountId).state, fields);
        p.sadd(keys.shardFor(accountId).accounts, String(accountId));
        if (a.clientOrders.size > 0) {
          p.hset(keys.account(accountId).clientOrders, Object.fromEntries(a.clientOrders));
          if (keys.clientOrderTtlMs > 0) p.pexpire(keys.account(accountId).clientOrders, keys.clientOrderTtlMs);
        }
        const state = { balance: a.balance, positions: a.positions };
        queueIndexUpdate(p, risk, accountId, null, liquidationThresholds(state, marks, rules), tieredEntries(state, marks, rules));
        positions += a.positions.size;
        clientOrders += a.clientOrders.size;
      }
      for (const results of await Promise.all(pipelines.map((p) => p.exec()))) {
        const failed = results?.find(([e]) => e);
        if (failed) throw failed[0];
      }
      this.onRebuildProgress?.(Math.min(i + CHUNK, entries.length), entries.length);
    }
    await Promise.all(risk.shards.map((rk) => redis.incr(rk.rev)));
    // Last, on every shard: the state is complete. One marker for all, so a
    // shard whose copy is lost (a cluster node restarted empty) shows as missing.
    const boot = randomUUID();
    await Promise.all(keys.shards.map((k) => redis.hset(k.marks, BOOT_FIELD, boot)));
    // The market versions written above are in Redis now (a change committed since is still pending, and published by the watch).
    await this.deps.sql`
      UPDATE markets m SET applied_version = w.version
      FROM unnest(${expected.markets.map((m) => m.symbol)}::text[], ${expected.markets.map((m) => m.version)}::bigint[]) AS w(symbol, version)
      WHERE m.symbol = w.symbol AND m.applied_version < w.version`;
    const stats = { accounts: expected.accounts.size, positions, clientOrders, marks: expected.marks.size, ms: Math.trunc(performance.now() - started) };
    log.info(stats, 'rebuilt redis from postgresql');
    return stats;
  }

  /**
   * An operation committed its rows but could not apply them to Redis (Redis
   * failed between the two): the next watch that finds Redis answering
   * replays them, so the account does not wait for its next operation to be
   * right in the report and the risk index.
   */
  noteLagging(accountId: number): void {
    this.lagging.add(accountId);
  }

  private async catchUpLagging(): Promise<void> {
    const { redis, keys, log } = this.deps;
    for (const accountId of [...this.lagging]) {
      const seq = Number.parseInt((await redis.hget(keys.account(accountId).state, 'seq')) ?? '0', 10);
      const replayed = await this.catchUpAccount(accountId, seq);
      if (replayed > 0) log.warn({ accountId, fromSeq: seq, replayed }, 'caught up an account whose apply had failed');
      this.lagging.delete(accountId);
    }
  }

  /** Replays the ledger rows after `fromSeq` into Redis and re-indexes the account if any; returns how many. */
  private async catchUpAccount(accountId: number, fromSeq: number): Promise<number> {
    const { redis, sql, keys, risk, riskDefaults, markBook, timeoutMs } = this.deps;
    const replayed = await catchUp(redis, sql, keys, accountId, fromSeq, timeoutMs);
    if (replayed.length > 0) await reindexAccount(redis, keys, risk, markBook, riskDefaults, accountId, await this.indexedSymbols(accountId));
    return replayed.length;
  }

  /** Catches up every account whose Redis sequence is behind its ledger; returns how many. */
  async catchUpAll(): Promise<number> {
    const { redis, sql, keys, log } = this.deps;
    const heads = await sql<{ account_id: string; seq: string }[]>`SELECT account_id, max(seq) AS seq FROM ledger GROUP BY account_id`;
    let behind = 0;
    for (let i = 0; i < heads.length; i += CHUNK) {
      const chunk = heads.slice(i, i + CHUNK);
      const seqs = await Promise.all(chunk.map((h) => redis.hget(keys.account(Number(h.account_id)).state, 'seq')));
      for (const [j, h] of chunk.entries()) {
        const inRedis = Number.parseInt(seqs[j] ?? '0', 10);
        if (inRedis < Number(h.seq)) {
          behind++;
          await this.catchUpAccount(Number(h.account_id), inRedis);
        }
      }
    }
    if (behind > 0) log.warn({ behind }, 'caught up accounts that were behind the ledger');
    return behind;
  }

  private async indexedSymbols(accountId: number): Promise<Set<string>> {
    const { redis, risk } = this.deps;
    const rk = risk.of(accountId);
    const symbols = await redis.smembers(rk.symbols);
    const m = member(accountId);
    const scores = await Promise.all(symbols.flatMap((s) => [redis.zscore(rk.long(s), m), redis.zscore(rk.short(s), m)]));
    return new Set(symbols.filter((_, i) => scores[2 * i] !== null || scores[2 * i + 1] !== null));
  }

  /** Deletes every key under the prefix (the rebuild lock lives outside it). */
  private async deleteAll(): Promise<void> {
    const { redis, keys } = this.deps;
    // Every primary's keys (on a cluster, SCAN sees one node); one UNLINK per slot.
    await scanAll(redis, `${keys.prefix}:*`, (found) => Promise.all([...bySlot(found).values()].map((group) => redis.unlink(...group))));
  }
}

