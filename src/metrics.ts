/**
 * Prometheus metrics (GET /metrics), with prom-client: one registry per
 * engine (tests run several engines in one process). Money shown here
 * (shortfalls) is converted to a float for display only; nothing reads it
 * back.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type Metric } from 'prom-client';

export interface Metrics {
  readonly registry: Registry;
  /** Every HTTP answer, by route: latency and status (see RequestSeries). */
  readonly http: RequestSeries;
  readonly tradesBooked: Counter;
  readonly tradesRejected: Counter<'code'>;
  /** Items per POST /trades batch. */
  readonly tradeBatchItems: Histogram;
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

/**
 * One (method, route)'s answers: a latency histogram and a count per status,
 * plain numbers that each answer bumps.
 */
export class RouteSeries {
  /** Answers per latency bucket, not cumulative; the last one is past every bound. */
  readonly buckets: number[] = new Array<number>(SECONDS.length + 1).fill(0);
  sum = 0;
  count = 0;
  /** Answers by status code. */
  readonly statuses = new Map<number, number>();

  constructor(
    readonly method: string,
    readonly route: string,
  ) {}

  observe(seconds: number, status: number): void {
    let i = 0;
    while (i < SECONDS.length && seconds > SECONDS[i]!) i++;
    this.buckets[i] = this.buckets[i]! + 1;
    this.sum += seconds;
    this.count += 1;
    this.statuses.set(status, (this.statuses.get(status) ?? 0) + 1);
  }
}

/**
 * The HTTP request series: margin_engine_http_request_duration_seconds (by
 * method and route) and margin_engine_http_requests_total (by method, route
 * and status). Each answer adds to its route's plain numbers; prom-client
 * reads them only when scraped. Its own labelled series hash their label
 * values on every observation, even through a child kept from labels():
 * about 1.2 µs an answer for the two, against some 0.05 µs for these
 * (`npm run bench -- metrics`).
 */
export class RequestSeries {
  /** By method, then route: both strings are the same objects answer after answer, so each lookup hashes nothing. */
  private readonly byMethod = new Map<string, Map<string, RouteSeries>>();

  /** The series of one method and route pattern, created on first use. */
  of(method: string, route: string): RouteSeries {
    let routes = this.byMethod.get(method);
    if (routes === undefined) this.byMethod.set(method, (routes = new Map()));
    let series = routes.get(route);
    if (series === undefined) routes.set(route, (series = new RouteSeries(method, route)));
    return series;
  }

  all(): RouteSeries[] {
    return [...this.byMethod.values()].flatMap((routes) => [...routes.values()]);
  }
}

/** A metric whose samples prom-client's registry asks for at each scrape (the shape its own metrics hand it). */
interface Sample {
  readonly metricName?: string;
  readonly labels: Record<string, string | number>;
  readonly value: number;
}

function registerSeries(registry: Registry, name: string, help: string, type: 'counter' | 'histogram', samples: () => Sample[]): void {
  const metric = {
    name,
    help,
    type,
    aggregator: 'sum',
    get: async () => ({ name, help, type, aggregator: 'sum', values: samples() }),
  };
  // The registry reads only name, help, type and get() of what it holds; its
  // type admits prom-client's own classes alone.
  registry.registerMetric(metric as unknown as Metric);
}

function registerRequestSeries(registry: Registry, http: RequestSeries): void {
  registerSeries(registry, 'margin_engine_http_requests_total', 'HTTP requests by route and status', 'counter', () =>
    http.all().flatMap((s) => [...s.statuses].map(([status, value]) => ({ labels: { method: s.method, route: s.route, status }, value }))),
  );
  const name = 'margin_engine_http_request_duration_seconds';
  registerSeries(registry, name, 'HTTP request latency by route', 'histogram', () =>
    http.all().flatMap((s) => {
      const labels = { method: s.method, route: s.route };
      let cumulative = 0;
      const buckets = SECONDS.map((le, i) => {
        cumulative += s.buckets[i]!;
        return { metricName: `${name}_bucket`, labels: { le, ...labels }, value: cumulative };
      });
      return [
        ...buckets,
        { metricName: `${name}_bucket`, labels: { le: '+Inf', ...labels }, value: s.count },
        { metricName: `${name}_sum`, labels, value: s.sum },
        { metricName: `${name}_count`, labels, value: s.count },
      ];
    }),
  );
}

export function createMetrics(probes: MetricsProbes): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'margin_engine_' }); // process, heap, GC, event-loop lag
  const http = new RequestSeries();
  registerRequestSeries(registry, http);
  const m = {
    registry,
    http,
    tradesBooked: new Counter({ name: 'margin_engine_trades_booked_total', help: 'Trades booked (POST /trade answered 200, or a POST /trades item answered 200)', registers: [registry] }),
    tradesRejected: new Counter({ name: 'margin_engine_trades_rejected_total', help: 'Trades refused, by error code', labelNames: ['code'], registers: [registry] }),
    tradeBatchItems: new Histogram({
      name: 'margin_engine_trade_batch_items',
      help: 'Trades per POST /trades batch (a batch refused as a whole is not counted)',
      buckets: [1, 10, 50, 100, 250, 500, 1000],
      registers: [registry],
    }),
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
