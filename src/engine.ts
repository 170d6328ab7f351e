/**
 * Wires the engine together: clients are created here (never at import time)
 * and closed by `close()`.
 */
import type { Logger } from 'pino';
import { defaultMarketParams, type Config } from './config.js';
import { bootMarkerPresent, MarkBook } from './store/mark-book.js';
import { accountCount } from './store/account-state.js';
import { loadScripts } from './store/scripts.js';
import { GroupCommitter, LiquidationIds, type LiquidationRecord } from './store/ledger.js';
import { createMetrics, type Metrics } from './metrics.js';
import { RiskKeys } from './store/risk-index.js';
import { AccountRunner } from './services/account-runner.js';
import { LiquidationService } from './services/liquidation.js';
import { migrate } from './store/migrate.js';
import { createSql, type Sql } from './store/postgres.js';
import { createRedis, KeySpace, type RedisClient } from './store/redis.js';
import { AccountCache } from './services/account-cache.js';
import { AccountGate } from './services/account-gate.js';
import { AccountsView } from './services/accounts-view.js';
import { isPostgresUnavailable, withTimeout } from './services/dependencies.js';
import { EventHub } from './services/events.js';
import { FundingService } from './services/funding.js';
import { MarginCallService } from './services/margin-calls.js';
import { MarksService } from './services/marks.js';
import { MarketsService } from './services/markets.js';
import { ApiKeys } from './services/api-keys.js';
import { InsuranceFundService } from './services/insurance.js';
import { MarginReportService } from './services/margin-report.js';
import { Recovery } from './services/recovery.js';
import { TradingService } from './services/trading.js';

export interface Engine {
  readonly config: Config;
  /** Prometheus metrics (null with METRICS=off). */
  readonly metrics: Metrics | null;
  readonly redis: RedisClient;
  readonly sql: Sql;
  readonly keys: KeySpace;
  readonly committer: GroupCommitter;
  readonly trading: TradingService;
  readonly liquidation: LiquidationService;
  readonly accounts: AccountsView;
  readonly marks: MarksService;
  readonly markets: MarketsService;
  readonly funding: FundingService;
  /** API keys (null with AUTH=off). */
  readonly apiKeys: ApiKeys | null;
  readonly report: MarginReportService;
  readonly insurance: InsuranceFundService;
  readonly recovery: Recovery;
  /** The live event stream (GET /events). */
  readonly events: EventHub;
  /** Pings both stores; reports each one's state. */
  readiness(): Promise<{ redis: boolean; postgres: boolean }>;
  close(): Promise<void>;
}

export interface EngineOptions {
  /** Apply the SQL migrations before serving (default true). */
  readonly migrate?: boolean;
  /** Rebuild or catch up Redis at start and watch for state loss (default true). */
  readonly recover?: boolean;
}

/** A store could not be reached at start-up; the message names it and its address (never its credentials). */
export class StoreUnreachable extends Error {
  constructor(store: 'Redis' | 'PostgreSQL', address: string, cause: unknown) {
    super(`cannot reach ${store} at ${address}: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = 'StoreUnreachable';
    this.cause = cause;
  }
}

/** host:port (and the database, for PostgreSQL) of a store URL, without user or password. */
export function addressOf(url: string): string {
  try {
    const u = new URL(url);
    const path = u.pathname && u.pathname !== '/' ? u.pathname : '';
    return `${u.hostname}${u.port ? `:${u.port}` : ''}${path}`;
  } catch {
    return '(unparsable URL)';
  }
}

async function reach(store: 'Redis' | 'PostgreSQL', address: string, connect: () => Promise<unknown>): Promise<void> {
  try {
    await connect();
  } catch (error) {
    throw new StoreUnreachable(store, address, error);
  }
}

export async function createEngine(config: Config, log: Logger, options: EngineOptions = {}): Promise<Engine> {
  const sql = createSql({
    url: config.databaseUrl,
    schema: config.databaseSchema,
    poolSize: config.databasePoolSize,
    connectTimeoutSeconds: Math.max(1, Math.ceil(config.dependencyTimeoutMs / 1000)),
  });
  // Marks and their sweep records commit without waiting for the WAL flush (see commitMark).
  const marksSql = createSql({
    url: config.databaseUrl,
    schema: config.databaseSchema,
    poolSize: 2,
    connectTimeoutSeconds: Math.max(1, Math.ceil(config.dependencyTimeoutMs / 1000)),
    asyncCommit: true,
  });
  const redis = createRedis({ url: config.redisUrl, clusterNodes: config.redisClusterNodes, commandTimeoutMs: config.dependencyTimeoutMs });
  // The cluster's seed nodes (host:port only), or the URL's address: never credentials.
  const redisAddress = config.redisClusterNodes ? `cluster ${config.redisClusterNodes.map((n) => `${n.host}:${n.port}`).join(',')}` : addressOf(config.redisUrl);
  redis.on('error', (err: Error) => log.warn({ err: err.message }, 'redis connection error'));
  try {
    await reach('Redis', redisAddress, async () => {
      await redis.connect();
      await loadScripts(redis);
    });
    await reach('PostgreSQL', addressOf(config.databaseUrl), () => sql`SELECT 1`);
    if (options.migrate ?? true) {
      const applied = await migrate(sql, config.databaseSchema);
      if (applied.length > 0) log.info({ applied }, 'applied migrations');
    }
  } catch (error) {
    redis.disconnect();
    await Promise.all([sql.end({ timeout: 1 }), marksSql.end({ timeout: 1 })]);
    throw error;
  }

  const keys = new KeySpace(config.redisKeyPrefix, config.clientOrderRetentionS * 1000, config.redisShards);
  const timeoutMs = config.dependencyTimeoutMs;
  let readinessForMetrics: () => Promise<{ redis: boolean; postgres: boolean }> = async () => ({ redis: false, postgres: false });
  const metrics = config.metrics
    ? createMetrics({
        readiness: () => readinessForMetrics(),
        accounts: () => accountCount(redis, keys),
      })
    : null;
  const events = new EventHub(sql, { timeoutMs, log });
  const committer = new GroupCommitter(sql, {
    onCommit: (rows: number, seconds: number) => {
      // Rows committed here are read for the event stream at once, not at the next poll.
      events.poke();
      metrics?.commitRows.observe(rows);
      metrics?.commitSeconds.observe(seconds);
    },
    maxRows: config.commitBatchMax,
    maxConcurrent: config.commitConcurrency,
    earlyRows: config.commitEarlyRows,
    flushTimeoutMs: timeoutMs,
    isConnectionError: isPostgresUnavailable,
  });
  const defaults = defaultMarketParams(config);
  const riskDefaults = defaults;
  const markBook = new MarkBook(redis, keys, defaults);
  const cache = new AccountCache(config.accountCacheSize);
  const gate = new AccountGate(redis, keys, markBook, cache, {
    lockTtlMs: config.accountLockTtlMs,
    lockWaitMs: config.accountLockTtlMs + timeoutMs,
    marksMaxAgeMs: config.marksMaxAgeMs,
    trustedPath: config.trustedPath,
  });

  const risk = new RiskKeys(keys);
  const recovery = new Recovery({ redis, sql, keys, risk, riskDefaults, markBook, timeoutMs, log });
  const runner = new AccountRunner({
    redis,
    sql,
    keys,
    risk,
    gate,
    cache,
    marks: markBook,
    committer,
    riskDefaults,
    timeoutMs,
    // Half a timeout: a read or tick racing a Redis failure answers 503 well within a second.
    appliedWaitMs: Math.floor(timeoutMs / 2),
    log,
    onLagging: (accountId) => recovery.noteLagging(accountId),
  });
  const applied = (accountId?: number) => runner.applied(accountId);
  const liquidation = new LiquidationService({
    redis,
    sql,
    keys,
    risk,
    runner,
    ids: new LiquidationIds(sql),
    riskDefaults,
    timeoutMs,
    log,
    ...(metrics
      ? {
          onLiquidated: (record: LiquidationRecord) => {
            metrics.liquidations.inc({ mode: record.mode, reason: record.reason });
            // For display only: a float of the exact decimal.
            metrics.shortfall.inc(Number(record.shortfall));
          },
          // For display only, like the shortfall.
          onBadDebt: (amount: string) => metrics.badDebt.inc(Number(amount)),
        }
      : {}),
  });
  const marginCalls = new MarginCallService({ redis, marksSql, keys, risk, markBook, riskDefaults, timeoutMs, log });
  const marks = new MarksService({ redis, sql, marksSql, keys, risk, markBook, liquidation, marginCalls, defaults, timeoutMs, committer, applied, log });
  recovery.finishSweeps = async (all) => {
    const left = await marks.finishPending(all);
    // Liquidations a crash or an outage left unsettled against the insurance fund.
    await liquidation.settle();
    return left;
  };
  const funding = new FundingService({ redis, sql, keys, risk, runner, markBook, liquidation, riskDefaults, committer, timeoutMs, chunk: config.fundingChunk, log });
  recovery.finishFundings = (all) => funding.finishPending(all);
  const apiKeys = config.auth ? new ApiKeys(sql, { adminKey: config.adminApiKey, timeoutMs, log }) : null;
  try {
    if (options.recover ?? true) await recovery.start();
    await apiKeys?.start();
  } catch (error) {
    recovery.stop();
    redis.disconnect();
    await Promise.all([sql.end({ timeout: 1 }), marksSql.end({ timeout: 1 })]);
    throw error;
  }
  gate.startHeartbeat();

  const engine: Engine = {
    config,
    metrics,
    redis,
    sql,
    keys,
    committer,
    trading: new TradingService({ runner, liquidation, riskDefaults, log }),
    liquidation,
    accounts: new AccountsView({ redis, sql, keys, marks: markBook, riskDefaults, timeoutMs, applied }),
    marks,
    markets: new MarketsService({ redis, sql, keys, risk, markBook, defaults, timeoutMs, applied, log, liquidation }),
    funding,
    apiKeys,
    insurance: new InsuranceFundService({ sql, timeoutMs, log }),
    report: new MarginReportService({ redis, keys, risk, marks: markBook, riskDefaults, applied }),
    recovery,
    events,
    async readiness() {
      const ping = async (p: () => Promise<unknown>) => {
        try {
          await withTimeout(p(), timeoutMs, 'ping');
          return true;
        } catch {
          return false;
        }
      };
      // Redis is ready when it answers and holds a complete state (the boot marker).
      const redisReady = async () => {
        if (!(await bootMarkerPresent(redis, keys))) throw new Error('no boot marker');
      };
      const [r, pg] = await Promise.all([ping(redisReady), ping(() => sql`SELECT 1`)]);
      return { redis: r && recovery.ready && marks.pendingSweeps === 0 && funding.pending === 0, postgres: pg && !committer.unavailable };
    },
    async close() {
      apiKeys?.stop();
      events.close();
      await gate.stopHeartbeat();
      recovery.stop();
      await recovery.idle();
      // Operations answered at their commit may still be applying to Redis (and re-checking): let them finish.
      await runner.idle();
      await committer.close();
      redis.disconnect();
      await Promise.all([sql.end({ timeout: 5 }), marksSql.end({ timeout: 5 })]);
    },
  };
  readinessForMetrics = () => engine.readiness();
  return engine;
}
