/**
 * The engine's configuration: one zod schema over the environment, parsed once
 * at start-up. Nothing else in the code base reads process.env.
 */
import { z } from 'zod';
import { D } from './domain/decimal.js';
import type { MarketParams } from './domain/markets.js';

const rate = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .refine((s) => /^(0(\.\d+)?|1(\.0+)?)$/.test(s.trim()), 'must be a decimal between 0 and 1')
    .transform((s) => new D(s.trim()));

const signedRate = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .refine((s) => /^-?(0(\.\d+)?|1(\.0+)?)$/.test(s.trim()), 'must be a decimal between -1 and 1')
    .transform((s) => new D(s.trim()));

const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);

const envSchema = z
  .object({
    /** Loopback by default: a container sets HOST=0.0.0.0 (see docker-compose.yaml). */
    HOST: z.string().min(1).default('127.0.0.1'),
    PORT: z.coerce.number().int().min(0).max(65535).default(8000),
    REDIS_URL: z.url({ protocol: /^rediss?$/ }).default('redis://127.0.0.1:6379'),
    DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/ }).default('postgres://postgres@127.0.0.1:5432/postgres'),
    DATABASE_SCHEMA: z
      .string()
      .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lower-case SQL identifier')
      .default('public'),
    REDIS_KEY_PREFIX: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 of A-Z a-z 0-9 _ . -')
      .default('me'),
    /**
     * Index shards: accounts are spread over this many hash slots, each with
     * its own part of the risk index, revision and copy of the marks (see
     * docs/architecture.md, "Redis"). Changing it needs a rebuild (npm run rebuild).
     */
    REDIS_SHARDS: z.coerce.number().int().min(1).max(256).optional(),
    /** A Redis Cluster's seed nodes, `host:port,host:port,...` (instead of REDIS_URL, never beside it). */
    REDIS_CLUSTER_NODES: z
      .string()
      .transform((s, ctx) => {
        const nodes = s.split(',').map((n) => n.trim());
        const parsed = nodes.map((n) => /^([A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})$/.exec(n));
        if (parsed.some((m) => m === null || Number(m[2]) < 1 || Number(m[2]) > 65535)) {
          ctx.addIssue({ code: 'custom', message: 'must be host:port[,host:port...]' });
          return z.NEVER;
        }
        return parsed.map((m) => ({ host: m![1]!.replace(/^\[|\]$/g, ''), port: Number(m![2]) }));
      })
      .optional(),
    INITIAL_MARGIN_RATE: rate('0.20'),
    MAINTENANCE_MARGIN_RATE: rate('0.10'),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** json: one JSON object per line (for collectors); pretty: one readable line per event (for people). */
    LOG_FORMAT: z.enum(['json', 'pretty']).default('json'),
    DATABASE_POOL_SIZE: positiveInt(10),
    /** How long a request may wait on Redis or PostgreSQL before it answers 503. */
    DEPENDENCY_TIMEOUT_MS: positiveInt(800),
    /** Lease of the cross-process account lock; a crashed holder frees it after this. */
    ACCOUNT_LOCK_TTL_MS: positiveInt(5000),
    /** Accounts whose last committed state each process keeps in memory (0: none; every operation parses Redis's copy). */
    ACCOUNT_CACHE_SIZE: z.coerce.number().int().min(0).max(10_000_000).default(10_000),
    /**
     * The trusted path (no read before deciding, for cached accounts; the
     * answer goes out at the commit and the Redis apply follows): 'auto'
     * takes it only while this is the only engine process on the key prefix
     * (a heartbeat in Redis tells), 'on' beside others too (collisions are
     * fenced by the ledger's key, at a cost), 'off' never.
     */
    TRUSTED_PATH: z.enum(['auto', 'on', 'off']).default('auto'),
    /**
     * How recently a Redis reply must have confirmed this process's copy of the
     * marks for a trade or cash movement on a cached account to skip its read
     * round trip (0: every operation reads). Bounds how stale a mark posted
     * through another engine process can be when a trade is checked.
     */
    MARKS_MAX_AGE_MS: z.coerce.number().int().min(0).max(60_000).default(20),
    /**
     * How long Redis keeps an account's booked client order results after its
     * last one (seconds; 0: for ever). Later repeats are answered from the
     * ledger, whose unique index keeps client order ids for good.
     */
    CLIENT_ORDER_RETENTION_S: z.coerce.number().int().min(0).max(31_536_000).default(86_400),
    /** Most rows one group commit writes to PostgreSQL. */
    COMMIT_BATCH_MAX: positiveInt(512),
    /** Group commits in flight at once; must stay below DATABASE_POOL_SIZE. */
    COMMIT_CONCURRENCY: positiveInt(6),
    /** A group commit leaves as soon as this many rows wait (0: only at the end of the event loop's turn). */
    COMMIT_EARLY_ROWS: z.coerce.number().int().min(0).max(100_000).default(32),
    /** Holders one bulk write of a funding event charges (one read, one INSERT, a few Redis applies). */
    FUNDING_CHUNK: z.coerce.number().int().min(1).max(20_000).default(500),
    /** Engine processes sharing the port (node:cluster); each is a full engine on the same Redis and PostgreSQL. */
    WORKERS: z.coerce.number().int().min(1).max(64).default(1),
    /** API keys and roles. 'off' only while the engine listens on loopback alone. */
    AUTH: z.enum(['on', 'off']).default('on'),
    /** Accepted as an admin key without being stored (bootstrapping, containers). */
    ADMIN_API_KEY: z.string().min(32, 'must be at least 32 characters').max(256).regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces').optional(),
    /** Trade price band: a trade further than this fraction from the market's mark is refused (0: off). Per market. */
    TRADE_PRICE_BAND: rate('0.05'),
    /** Mark move guard: a mark further than this fraction from the last one needs "force": true (0: off). Per market. */
    MARK_MAX_MOVE: rate('0'),
    /** Defaults of market parameters that take effect with later features; stored per market now. */
    LIQUIDATION_MODE: z.enum(['full', 'partial']).default('full'),
    LIQUIDATION_FEE_RATE: rate('0'),
    LIQUIDATION_BUFFER: rate('0.02'),
    MAKER_FEE_RATE: signedRate('0'),
    TAKER_FEE_RATE: rate('0'),
    LOT_SIZE: z
      .string()
      .refine((s) => /^(?:\d+(?:\.\d{1,18})?)$/.test(s.trim()) && !new D(s.trim()).isZero(), 'must be a positive decimal with at most 18 places')
      .transform((s) => new D(s.trim()))
      .optional(),
    /** How long a request may take to arrive, headers and body (ms); a slower one is answered 408 and closed. */
    REQUEST_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(10_000),
    /** Prometheus metrics at GET /metrics: on, or off (nothing recorded). */
    METRICS: z.enum(['on', 'off']).default('on'),
    /** Most open connections; further ones are closed at once. */
    MAX_CONNECTIONS: z.coerce.number().int().min(1).max(1_000_000).default(10_000),
    /** How long an event-stream consumer may leave its socket full before it is dropped (it resumes with Last-Event-ID). */
    EVENTS_STALL_MS: z.coerce.number().int().min(100).max(600_000).default(10_000),
    /** How long a shutdown may take (ms) before the process gives up on it and exits non-zero. */
    SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(10_000),
  })
  // The engine's names for the values: Config is this transform's output type, so each field is declared once.
  .transform(
    (e) =>
      ({
        host: e.HOST,
        port: e.PORT,
        redisUrl: e.REDIS_URL,
        databaseUrl: e.DATABASE_URL,
        databaseSchema: e.DATABASE_SCHEMA,
        redisKeyPrefix: e.REDIS_KEY_PREFIX,
        redisClusterNodes: e.REDIS_CLUSTER_NODES ?? null,
        // A cluster's default spreads the index over its primaries (see docs/architecture.md); one node needs one shard.
        redisShards: e.REDIS_SHARDS ?? (e.REDIS_CLUSTER_NODES ? 16 : 1),
        initialMarginRate: e.INITIAL_MARGIN_RATE,
        maintenanceMarginRate: e.MAINTENANCE_MARGIN_RATE,
        logLevel: e.LOG_LEVEL,
        logFormat: e.LOG_FORMAT,
        databasePoolSize: e.DATABASE_POOL_SIZE,
        dependencyTimeoutMs: e.DEPENDENCY_TIMEOUT_MS,
        accountLockTtlMs: e.ACCOUNT_LOCK_TTL_MS,
        accountCacheSize: e.ACCOUNT_CACHE_SIZE,
        marksMaxAgeMs: e.MARKS_MAX_AGE_MS,
        clientOrderRetentionS: e.CLIENT_ORDER_RETENTION_S,
        trustedPath: e.TRUSTED_PATH,
        commitBatchMax: e.COMMIT_BATCH_MAX,
        commitConcurrency: e.COMMIT_CONCURRENCY,
        commitEarlyRows: e.COMMIT_EARLY_ROWS,
        fundingChunk: e.FUNDING_CHUNK,
        workers: e.WORKERS,
        auth: e.AUTH === 'on',
        adminApiKey: e.ADMIN_API_KEY ?? null,
        /** Defaults of every market's parameters (a market stores only what was set for it). */
        marketDefaults: {
          tradePriceBand: e.TRADE_PRICE_BAND,
          maxMarkMove: e.MARK_MAX_MOVE,
          liquidationMode: e.LIQUIDATION_MODE,
          liquidationFeeRate: e.LIQUIDATION_FEE_RATE,
          liquidationBuffer: e.LIQUIDATION_BUFFER,
          makerFeeRate: e.MAKER_FEE_RATE,
          takerFeeRate: e.TAKER_FEE_RATE,
          lotSize: e.LOT_SIZE ?? null,
        },
        requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
        maxConnections: e.MAX_CONNECTIONS,
        metrics: e.METRICS === 'on',
        eventsStallMs: e.EVENTS_STALL_MS,
        shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
      }) as const,
  );

/** The parsed configuration (readonly throughout: `as const` above). */
export type Config = z.output<typeof envSchema>;

/** An address only this machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h === '::ffff:127.0.0.1';
}

/** Every market's parameters where it sets none of its own: the single default tier is the flat rates of the accounting rules. */
export function defaultMarketParams(config: Config): MarketParams {
  return {
    tiers: [{ maxNotional: null, initialMarginRate: config.initialMarginRate, maintenanceMarginRate: config.maintenanceMarginRate }],
    ...config.marketDefaults,
  };
}

export class ConfigError extends Error {}

/** Parses the environment; throws a ConfigError naming every bad variable. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  // An empty variable means "not set", as in most .env tooling.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(env)'}: ${i.message}`);
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  const c = parsed.data;
  if (c.redisClusterNodes !== null && present.REDIS_URL !== undefined) {
    throw new ConfigError('Invalid configuration:\n  REDIS_CLUSTER_NODES: set it or REDIS_URL, not both');
  }
  if (c.commitConcurrency >= c.databasePoolSize) {
    throw new ConfigError('Invalid configuration:\n  COMMIT_CONCURRENCY: must be below DATABASE_POOL_SIZE (reads need connections too)');
  }
  if (c.maintenanceMarginRate.gt(c.initialMarginRate)) {
    throw new ConfigError('Invalid configuration:\n  MAINTENANCE_MARGIN_RATE: must not exceed INITIAL_MARGIN_RATE');
  }
  if (!c.auth && !isLoopback(c.host)) {
    throw new ConfigError(`Invalid configuration:\n  AUTH: off is refused unless HOST is a loopback address (HOST is ${c.host})`);
  }
  if (c.marketDefaults.makerFeeRate.neg().gt(c.marketDefaults.takerFeeRate)) {
    throw new ConfigError('Invalid configuration:\n  MAKER_FEE_RATE: a rebate (negative maker rate) must not exceed TAKER_FEE_RATE');
  }
  return c;
}
