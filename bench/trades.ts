/**
 * POST /trade over HTTP: 1,000 accounts, mixed buys and sells, durable
 * acknowledgements, at 1, 16 and 64 connections; against a bare fastify echo
 * of the same body at 64 connections, in the same run with the same tool.
 * A third server, the storage floor (bench/floor-server.mjs: only a trade's
 * durable I/O, no logic), runs in the same rounds as the reference for what
 * any engine on this stack and machine could reach.
 *
 * Authentication: the engine runs with API keys on (its default); the load
 * carries a key of role `trading`, created through POST /admin/keys at setup,
 * as a matching engine's would. A second engine process with AUTH=off, on its
 * own schema and key prefix and seeded the same way, runs in every
 * 64-connection round beside the auth-on one, for the cost of the key check.
 * Every server in the rounds gets the very same requests, Authorization
 * header included (the auth-off engine, echo and floor ignore it).
 *
 * Each 64-connection round also sends the auth-on engine POST /trades
 * batches of BATCH fills (the same fills, BATCH to a request), counted in
 * trades per second beside the single route's.
 */
import postgres from 'postgres';
import {
  DATABASE_URL,
  cleanup,
  createKey,
  isolation,
  load,
  pool,
  post,
  startEcho,
  startEngine,
  startFloor,
  table,
  withCpu,
  type Child,
  type Costed,
  type Isolation,
  type LoadResult,
} from './harness.js';

export const ACCOUNTS = 1000;
/** Alternating echo/floor/engine (auth on and auth off) rounds at 64 connections. */
const ROUNDS = 3;
/** Fills per POST /trades request. */
export const BATCH = 100;

/** The load's request bodies: accounts in a scattered order, mixed buys and sells of two symbols near their marks. */
export function tradeBodies(accounts: number): () => string {
  let n = 0;
  return () => {
    n++;
    const btc = n % 3 !== 0;
    return JSON.stringify({
      account_id: 1 + ((n * 7919) % accounts),
      symbol: btc ? 'BTC-PERP' : 'ETH-PERP',
      side: n % 2 ? 'BUY' : 'SELL',
      quantity: btc ? `0.0${1 + (n % 9)}` : `0.${1 + (n % 9)}`,
      price: btc ? String(49900 + (n % 200)) : String(2990 + (n % 20)),
    });
  };
}

/** POST /trades bodies: `size` consecutive fills of tradeBodies each (distinct accounts: 7919 is prime to 1,000). */
export function batchBodies(accounts: number, size: number): () => string {
  const next = tradeBodies(accounts);
  return () => `{"trades":[${Array.from({ length: size }, next).join(',')}]}`;
}

/** The trades load's starting book: marks for both symbols and ACCOUNTS funded accounts. */
export async function seedTradeAccounts(base: string): Promise<void> {
  await post(base, '/mark-price', { symbol: 'BTC-PERP', price: '50000' });
  await post(base, '/mark-price', { symbol: 'ETH-PERP', price: '3000' });
  const ids = Array.from({ length: ACCOUNTS }, (_, i) => i + 1);
  await pool(ids, 32, (id) => post(base, `/accounts/${id}/deposit`, { amount: '1000000000' }));
}

/** A comparison server's row: its own ledger rows are not counted. */
const comparisonRow = ({ r, cpuUs, machineUs }: Costed): (string | number)[] => [
  r.rps.toFixed(0),
  r.p50,
  r.p99,
  r.non2xx + r.errors,
  '-',
  cpuUs.toFixed(0),
  machineUs.toFixed(0),
];

/** An engine under test, with a connection to its schema to count the ledger rows it writes. */
interface Subject {
  readonly engine: Child;
  readonly iso: Isolation;
  readonly sql: postgres.Sql;
}

async function startSubject(env: Record<string, string>): Promise<Subject> {
  const iso = isolation();
  const engine = await startEngine(iso, env).catch(async (error: unknown) => {
    await cleanup(iso);
    throw error;
  });
  const sql = postgres(DATABASE_URL, { connection: { search_path: iso.schema }, onnotice: () => {} });
  return { engine, iso, sql };
}

async function stopSubject(s: Subject | null): Promise<void> {
  if (s === null) return;
  await s.sql.end();
  await s.engine.stop();
  await cleanup(s.iso);
}

export async function benchTrades(seconds: number): Promise<string> {
  let on: Subject | null = null;
  let off: Subject | null = null;
  try {
    on = await startSubject({});
    // The auth-off engine: its own schema and key prefix (so neither sees the
    // other's heartbeat, and each keeps the trusted path), seeded the same
    // way. It idles while the other servers are loaded, as the echo and the
    // floor do; nothing of it runs but its timers.
    off = await startSubject({ AUTH: 'off' });
    const onEngine: Subject = on;
    const offEngine: Subject = off;
    // The load's key: role `trading`, as a matching engine would hold.
    const tradingKey = await createKey(onEngine.engine.base, 'trading', 'bench trades load');
    await seedTradeAccounts(onEngine.engine.base);
    await seedTradeAccounts(offEngine.engine.base);

    const body = tradeBodies(ACCOUNTS);
    const loadOf = (base: string, connections: number, s: number) => load(base, connections, s, body, { key: tradingKey });
    // As many distinct fills as the single route's load cycles through.
    const batchOf = (base: string, s: number) =>
      load(base, 64, s, batchBodies(ACCOUNTS, BATCH), { key: tradingKey, path: '/trades', distinct: 20_000 / BATCH });
    const rows: (string | number)[][] = [];
    const count = async (sql: postgres.Sql) => (await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ledger`)[0]!.n;
    // Engine CPU per trade (user + system time over 2xx answers): steadier than the rate on a shared machine.
    const engineRun = async ({ engine, sql }: Subject, label: string, connections: number) => {
      const before = await count(sql);
      const { r, cpuUs, machineUs } = await withCpu(engine, () => loadOf(engine.base, connections, seconds));
      const after = await count(sql);
      rows.push([label, r.rps.toFixed(0), r.p50, r.p99, r.non2xx + r.errors, ((after - before) / r.seconds).toFixed(0), cpuUs.toFixed(0), machineUs.toFixed(0), engine.rssMiB().toFixed(0)]);
      return r;
    };
    for (const connections of [1, 16]) await engineRun(onEngine, `engine, ${connections} conn`, connections);
    // The auth-off engine gets the same history as the auth-on one's 1- and
    // 16-connection rows (JIT, caches, ledger size), not printed.
    for (const connections of [1, 16]) await loadOf(offEngine.engine.base, connections, seconds);
    // The 64-connection comparison alternates echo, floor and engine runs,
    // so each ratio compares neighbours in time: this shared machine's speed
    // drifts by tens of percent over a minute. The two engines run back to
    // back, in turns (on, off; then off, on; ...), so neither is always the
    // later one.
    const floorIso = isolation();
    const echo = await startEcho();
    const floor = await startFloor(floorIso);
    const rounds: { engine: LoadResult; engineOff: LoadResult; echo: LoadResult; floor: LoadResult; batch: number }[] = [];
    // Batches: a 2xx answer is BATCH fills; each must be booked (the rows/s column says whether all were).
    const batchRun = async (round: number) => {
      const { engine, sql } = onEngine;
      const before = await count(sql);
      const { r, cpuUs, machineUs } = await withCpu(engine, () => batchOf(engine.base, seconds));
      const after = await count(sql);
      const tradesPerSecond = (r.ok * BATCH) / r.seconds;
      rows.push([
        `engine, POST /trades × ${BATCH}, 64 conn (${round})`,
        tradesPerSecond.toFixed(0),
        r.p50,
        r.p99,
        r.non2xx + r.errors,
        ((after - before) / r.seconds).toFixed(0),
        (cpuUs / BATCH).toFixed(0),
        (machineUs / BATCH).toFixed(0),
        engine.rssMiB().toFixed(0),
      ]);
      return tradesPerSecond;
    };
    await batchOf(onEngine.engine.base, 2); // the batch route's first requests and JIT
    try {
      await loadOf(floor.base, 64, 2); // its first commits and JIT, as the engine's 1- and 16-connection rows warm it
      for (let round = 1; round <= ROUNDS; round++) {
        const e = await withCpu(echo, () => loadOf(echo.base, 64, seconds));
        rows.push([`bare fastify echo, 64 conn (${round})`, ...comparisonRow(e), echo.rssMiB().toFixed(0)]);
        const f = await withCpu(floor, () => loadOf(floor.base, 64, seconds));
        rows.push([`storage floor, 64 conn (${round})`, ...comparisonRow(f), floor.rssMiB().toFixed(0)]);
        const runOn = () => engineRun(onEngine, `engine, 64 conn (${round})`, 64);
        const runOff = () => engineRun(offEngine, `engine AUTH=off, 64 conn (${round})`, 64);
        let engine: LoadResult;
        let engineOff: LoadResult;
        let batch: number;
        // The batch run sits next to the single-route run it is compared with, before it in one round and after it in the next.
        if (round % 2 === 1) {
          batch = await batchRun(round);
          engine = await runOn();
          engineOff = await runOff();
        } else {
          engineOff = await runOff();
          engine = await runOn();
          batch = await batchRun(round);
        }
        rounds.push({ echo: e.r, floor: f.r, engine, engineOff, batch });
      }
    } finally {
      await Promise.all([echo.stop(), floor.stop()]);
      await cleanup(floorIso);
    }
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const ratios = (f: (r: (typeof rounds)[number]) => number) => {
      const xs = rounds.map(f);
      return `${xs.map((x) => x.toFixed(2)).join(' / ')}; median ${med(xs).toFixed(2)}`;
    };
    const rate = med(rounds.map((p) => p.engine.rps));
    const p99 = med(rounds.map((p) => p.engine.p99));
    return [
      `### POST /trade throughput (${ACCOUNTS} accounts, ${seconds} s per row, wrk)`,
      '',
      table(
        ['run', 'trades/s (2xx)', 'p50 ms', 'p99 ms', 'non-2xx + errors', 'PostgreSQL rows/s', 'process CPU µs/trade', 'machine CPU µs/trade', 'RSS MiB'],
        rows,
      ),
      '',
      `engine / bare fastify at 64 connections, per round: ${ratios((r) => r.engine.rps / r.echo.rps)} (target ≥ 0.35)`,
      `storage floor / bare fastify, per round: ${ratios((r) => r.floor.rps / r.echo.rps)} (durable I/O alone, no validation or margin math)`,
      `engine / storage floor, per round: ${ratios((r) => r.engine.rps / r.floor.rps)}`,
      `engine at 64 connections, median of ${ROUNDS}: ${rate.toFixed(0)} trades/s, p99 ${p99} ms (target ≥ 10,000 trades/s with p99 ≤ 25 ms)`,
      `auth on / auth off at 64 connections, per round: ${ratios((r) => r.engine.rps / r.engineOff.rps)} (target ≥ 0.95)`,
      `POST /trades × ${BATCH} / POST /trade, trades/s at 64 connections, per round: ${ratios((r) => r.batch / r.engine.rps)} (target ≥ 2)`,
      'Rows "engine": API keys on, the load holding a `trading` key; "engine AUTH=off": a second engine process, seeded the same way, sent the same requests.',
      `Rows "POST /trades × ${BATCH}": the auth-on engine sent the same fills ${BATCH} to a request; trades/s = 2xx requests × ${BATCH}, p50/p99 per request, CPU per trade.`,
    ].join('\n');
  } finally {
    await stopSubject(on);
    await stopSubject(off);
  }
}
