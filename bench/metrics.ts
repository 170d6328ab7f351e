/**
 * `npm run bench -- metrics`: what recording /metrics costs the trade route.
 *
 * 1. Per answer, in process: the engine's onResponse recording hook, called
 *    a million times on a real fastify request and reply of POST /trade (the
 *    route pattern looked up, the latency and status recorded, the trade
 *    counted), in ns; beside it the recording this replaced, prom-client's
 *    labelled series through children kept from labels(). Divided by the
 *    engine's CPU per trade it bounds the share of the route's CPU that
 *    per-answer recording takes.
 * 2. Whole engine: two engine processes, METRICS=on and METRICS=off, each on
 *    its own schema and key prefix and seeded the same way, under the
 *    trades benchmark's load at 64 connections (wrk, a `trading` key), in
 *    PAIRS pairs of runs; the order within a pair alternates (on, off; off,
 *    on; ...), so the machine's drift hits both alike. Per pair: the on/off
 *    throughput ratio; per side: engine CPU µs per trade (user + system of
 *    the engine process over its 2xx answers). The figures are the medians.
 */
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { Counter, Histogram, Registry } from 'prom-client';
import { createMetrics } from '../src/metrics.js';
import { recordRequests } from '../src/http/routes/metrics.js';
import { cleanup, createKey, isolation, load, startEngine, table, withCpu, type Child, type Isolation } from './harness.js';
import { ACCOUNTS, seedTradeAccounts, tradeBodies } from './trades.js';

const PAIRS = 10;

type Hook = (req: FastifyRequest, reply: FastifyReply, done: () => void) => void;

/** A real request and reply of POST /trade, answered 200, and the engine's recording hook. */
async function capture(): Promise<{ req: FastifyRequest; reply: FastifyReply; hook: Hook }> {
  const app = Fastify();
  const metrics = createMetrics({ readiness: async () => ({ redis: true, postgres: true }), accounts: async () => 0 });
  let hook: Hook | null = null;
  const addHook = app.addHook.bind(app);
  (app as unknown as { addHook: (name: string, f: Hook) => unknown }).addHook = (name: string, f: Hook) => {
    if (name === 'onResponse') hook = f;
    return addHook(name as 'onResponse', f);
  };
  recordRequests(app, metrics);
  let got: { req: FastifyRequest; reply: FastifyReply } | null = null;
  app.post('/trade', async (req, reply) => {
    got = { req, reply };
    return { ok: true };
  });
  const res = await app.inject({ method: 'POST', url: '/trade', payload: { account_id: 1 } });
  if (res.statusCode !== 200 || got === null || hook === null) throw new Error('could not capture a request');
  return { ...(got as { req: FastifyRequest; reply: FastifyReply }), hook };
}

/** The recording before this engine kept its own numbers: prom-client's labelled series, children kept per route and status. */
function promClientHook(): Hook {
  const registry = new Registry();
  const requests = new Counter({ name: 'r', help: 'r', labelNames: ['method', 'route', 'status'], registers: [registry] });
  const seconds = new Histogram({ name: 's', help: 's', labelNames: ['method', 'route'], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [registry] });
  const booked = new Counter({ name: 'b', help: 'b', registers: [registry] });
  const counters = new Map<string, { inc(): void }>();
  const timers = new Map<string, { observe(value: number): void }>();
  return (req, reply, done) => {
    const route = req.routeOptions.url ?? 'unmatched';
    const status = reply.statusCode;
    const key = `${req.method} ${route}`;
    let timer = timers.get(key);
    if (timer === undefined) timers.set(key, (timer = seconds.labels({ method: req.method, route })));
    timer.observe(reply.elapsedTime / 1000);
    const counterKey = `${key} ${status}`;
    let counter = counters.get(counterKey);
    if (counter === undefined) counters.set(counterKey, (counter = requests.labels({ method: req.method, route, status })));
    counter.inc();
    if (route === '/trade' && req.method === 'POST' && status === 200) booked.inc();
    done();
  };
}

/** ns per call of `hook`: the best of five runs of a million calls. */
function nsPerCall(hook: Hook, req: FastifyRequest, reply: FastifyReply): number {
  const done = () => undefined;
  const n = 1_000_000;
  let best = Infinity;
  for (let run = 0; run < 6; run++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) hook(req, reply, done);
    const ns = Number(process.hrtime.bigint() - start) / n;
    if (run > 0) best = Math.min(best, ns); // the first run warms the JIT
  }
  return best;
}

interface Subject {
  readonly engine: Child;
  readonly iso: Isolation;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

export async function benchMetrics(seconds: number): Promise<string> {
  const { req, reply, hook } = await capture();
  const nowNs = nsPerCall(hook, req, reply);
  const beforeNs = nsPerCall(promClientHook(), req, reply);

  const subjects: Subject[] = [];
  try {
    for (const env of [{ METRICS: 'on' }, { METRICS: 'off' }]) {
      const iso = isolation();
      subjects.push({ engine: await startEngine(iso, env), iso });
    }
    const [on, off] = subjects as [Subject, Subject];
    const keys: string[] = [];
    for (const s of subjects) {
      keys.push(await createKey(s.engine.base, 'trading', 'bench metrics load'));
      await seedTradeAccounts(s.engine.base);
    }
    const body = tradeBodies(ACCOUNTS);
    const run = (s: Subject, s2: number) => withCpu(s.engine, () => load(s.engine.base, 64, s2, body, { key: keys[subjects.indexOf(s)]! }));
    // Warm-up: JIT, caches, the first commits, the same for both.
    await run(on, 3);
    await run(off, 3);
    const rows: (string | number)[][] = [];
    const pairs: { on: number; off: number; onUs: number; offUs: number }[] = [];
    for (let pair = 1; pair <= PAIRS; pair++) {
      const order = pair % 2 === 1 ? [on, off] : [off, on];
      const got = new Map<Subject, Awaited<ReturnType<typeof run>>>();
      for (const s of order) got.set(s, await run(s, seconds));
      const a = got.get(on)!;
      const b = got.get(off)!;
      pairs.push({ on: a.r.rps, off: b.r.rps, onUs: a.cpuUs, offUs: b.cpuUs });
      rows.push([
        pair,
        pair % 2 === 1 ? 'on, off' : 'off, on',
        a.r.rps.toFixed(0),
        b.r.rps.toFixed(0),
        (a.r.rps / b.r.rps).toFixed(3),
        a.cpuUs.toFixed(1),
        b.cpuUs.toFixed(1),
        (a.cpuUs / b.cpuUs).toFixed(3),
        a.r.non2xx + a.r.errors + b.r.non2xx + b.r.errors,
      ]);
    }
    const ratio = median(pairs.map((p) => p.on / p.off));
    const cpuRatio = median(pairs.map((p) => p.onUs / p.offUs));
    const onUs = median(pairs.map((p) => p.onUs));
    const offUs = median(pairs.map((p) => p.offUs));
    const sorted = pairs.map((p) => p.on / p.off).sort((x, y) => x - y);
    return [
      `### Metrics overhead: POST /trade at 64 connections, METRICS=on against METRICS=off (${PAIRS} pairs of ${seconds} s runs)`,
      '',
      table(['pair', 'order', 'on trades/s', 'off trades/s', 'on/off', 'on CPU µs/trade', 'off CPU µs/trade', 'CPU on/off', 'non-2xx + errors'], rows),
      '',
      `on/off throughput, median of the ${PAIRS} pair ratios: ${ratio.toFixed(3)} (range ${sorted[0]!.toFixed(3)} to ${sorted[sorted.length - 1]!.toFixed(3)}; target ≥ 0.97)`,
      `engine CPU per trade, median: on ${onUs.toFixed(1)} µs, off ${offUs.toFixed(1)} µs; median of the pair ratios ${cpuRatio.toFixed(3)}`,
      `recording one answer (the onResponse hook, in process): ${nowNs.toFixed(0)} ns, ${((nowNs / 1000 / offUs) * 100).toFixed(2)} % of the engine's CPU per trade with metrics off; prom-client's labelled series as before: ${beforeNs.toFixed(0)} ns (${((beforeNs / 1000 / offUs) * 100).toFixed(2)} %)`,
    ].join('\n');
  } finally {
    for (const s of subjects) {
      await s.engine.stop();
      await cleanup(s.iso);
    }
  }
}
