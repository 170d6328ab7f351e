/**
 * Prometheus metrics (GET /metrics), with prom-client: one registry per
 * engine (tests run several engines in one process). Money shown here
 * (shortfalls) is converted to a float for display only; nothing reads it
 * back.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface Metrics {
  readonly registry: Registry;
  readonly requests: Counter<'method' | 'route' | 'status'>;
  readonly requestSeconds: Histogram<'method' | 'route'>;
  readonly tradesBooked: Counter;
  readonly tradesRejected: Counter<'code'>;
  readonly liquidations: Counter<'mode' | 'reason'>;
  readonly shortfall: Counter;
  readonly badDebt: Counter;
  readonly markTickSeconds: Histogram<'outcome'>;
  readonly commitRows: Histogram;
  readonly commitSeconds: Histogram;
}

export interface MetricsProbes {
  /** Whether each store answers now (asked at each scrape). */
  readonly readiness: () => Promise<{ redis: boolean; postgres: boolean }>;
  /** How many accounts exist (asked at each scrape). */
  readonly accounts: () => Promise<number>;
}

/** Latency buckets in seconds, from 0.5 ms to 5 s. */
const SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export function createMetrics(probes: MetricsProbes): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'margin_engine_' }); // process, heap, GC, event-loop lag
  const m = {
    registry,
    requests: new Counter({ name: 'margin_engine_http_requests_total', help: 'HTTP requests by route and status', labelNames: ['method', 'route', 'status'], registers: [registry] }),
    requestSeconds: new Histogram({
      name: 'margin_engine_http_request_duration_seconds',
      help: 'HTTP request latency by route',
      labelNames: ['method', 'route'],
      buckets: SECONDS,
      registers: [registry],
    }),
    tradesBooked: new Counter({ name: 'margin_engine_trades_booked_total', help: 'Trades booked (POST /trade answered 200)', registers: [registry] }),
    tradesRejected: new Counter({ name: 'margin_engine_trades_rejected_total', help: 'Trades refused, by error code', labelNames: ['code'], registers: [registry] }),
    liquidations: new Counter({ name: 'margin_engine_liquidations_total', help: 'Liquidations committed, by mode and reason', labelNames: ['mode', 'reason'], registers: [registry] }),
    shortfall: new Counter({ name: 'margin_engine_liquidation_shortfall_total', help: 'Shortfall of liquidations (USDT, for display)', registers: [registry] }),
    badDebt: new Counter({ name: 'margin_engine_bad_debt_total', help: 'Shortfall no insurance fund covered (USDT, for display)', registers: [registry] }),
    markTickSeconds: new Histogram({
      name: 'margin_engine_mark_tick_duration_seconds',
      help: 'POST /mark-price from the request to the end of its liquidation sweep, by outcome',
      labelNames: ['outcome'],
      buckets: SECONDS,
      registers: [registry],
    }),
    commitRows: new Histogram({
      name: 'margin_engine_group_commit_rows',
      help: 'Ledger rows per group commit',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
      registers: [registry],
    }),
    commitSeconds: new Histogram({ name: 'margin_engine_group_commit_duration_seconds', help: 'Group commit latency', buckets: SECONDS, registers: [registry] }),
  };
  new Gauge({
    name: 'margin_engine_store_up',
    help: 'Whether each store answers (1) or not (0)',
    labelNames: ['store'],
    registers: [registry],
    async collect() {
      const state = await probes.readiness();
      this.set({ store: 'redis' }, state.redis ? 1 : 0);
      this.set({ store: 'postgres' }, state.postgres ? 1 : 0);
    },
  });
  new Gauge({
    name: 'margin_engine_accounts',
    help: 'Accounts that exist',
    registers: [registry],
    async collect() {
      try {
        this.set(await probes.accounts());
      } catch {
        // Redis down: the gauge keeps its last value; store_up says why.
      }
    },
  });
  return m;
}
