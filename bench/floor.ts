/**
 * Development aid, not part of `npm run bench`: how close to the bare echo
 * can anything get that books trades durably through this stack on this
 * machine? Alternates, at 64 connections with the trades benchmark's bodies:
 *
 *   echo   bench/echo-server.mjs: parse the JSON body, send it back;
 *   floor  bench/floor-server.mjs: parse, one row per trade into the real
 *          ledger table by group commit, answer at the commit, the state into
 *          Redis in one script call per batch; no validation, no decimal
 *          math, no checks;
 *   engine the built engine (dist/main.js).
 *
 * Prints per round the rate, p99, each server's CPU per request, and the
 * whole machine's CPU per request (every process: the server, PostgreSQL,
 * Redis, wrk, the kernel), and each one's ratio to the echo of its round.
 *
 *   npm run build && npx tsx bench/floor.ts [rounds=3] [seconds=8]
 */
import postgres from 'postgres';
import {
  type Child,
  DATABASE_URL,
  type LoadResult,
  cleanup,
  isolation,
  load,
  machineTicks,
  startEcho,
  startEngine,
  startFloor,
  table,
} from './harness.js';
import { ACCOUNTS, seedTradeAccounts, tradeBodies } from './trades.js';

const rounds = Number.parseInt(process.argv[2] ?? '3', 10);
const seconds = Number.parseInt(process.argv[3] ?? '8', 10);

interface Measured {
  readonly r: LoadResult;
  /** The server's own CPU per 2xx answer (user + system), µs. */
  readonly serverUs: number;
  /** All the machine's non-idle CPU per 2xx answer, µs. */
  readonly machineUs: number;
  /** The machine's idle share over the run, in cores. */
  readonly idleCores: number;
}

async function measure(server: Child, body: () => string): Promise<Measured> {
  const cpu = server.cpuSeconds();
  const before = machineTicks();
  const r = await load(server.base, 64, seconds, body);
  const after = machineTicks();
  const ok = Math.max(1, r.ok);
  const busy = (['user', 'system', 'irq', 'steal'] as const).reduce((s, k) => s + after[k]! - before[k]!, 0) / 100;
  return {
    r,
    serverUs: ((server.cpuSeconds() - cpu) * 1e6) / ok,
    machineUs: (busy * 1e6) / ok,
    idleCores: (after.idle! - before.idle!) / 100 / r.seconds,
  };
}

const engineIso = isolation();
const floorIso = isolation();
const engine = await startEngine(engineIso);
const floor = await startFloor(floorIso);
const echo = await startEcho();
const body = tradeBodies(ACCOUNTS);
const rows: (string | number)[][] = [];
const ratios: { floor: number; engine: number }[] = [];
try {
  await seedTradeAccounts(engine.base);
  // Warm all three (JIT, connection pools, the first commits).
  for (const s of [echo, floor, engine]) await load(s.base, 64, 2, body);
  for (let round = 1; round <= rounds; round++) {
    const e = await measure(echo, body);
    const f = await measure(floor, body);
    const g = await measure(engine, body);
    ratios.push({ floor: f.r.rps / e.r.rps, engine: g.r.rps / e.r.rps });
    for (const [name, m] of [
      ['echo', e],
      ['floor', f],
      ['engine', g],
    ] as const) {
      rows.push([
        `${name} (${round})`,
        m.r.rps.toFixed(0),
        m.r.p99,
        m.r.non2xx + m.r.errors,
        (m.r.rps / e.r.rps).toFixed(2),
        m.serverUs.toFixed(0),
        m.machineUs.toFixed(0),
        m.idleCores.toFixed(2),
      ]);
    }
  }
  const sql = postgres(DATABASE_URL, { connection: { search_path: floorIso.schema }, onnotice: () => {} });
  const n = (await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ledger`)[0]!.n;
  await sql.end();
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log(`### Echo, storage floor and engine at 64 connections (${seconds} s per run, wrk)\n`);
  console.log(
    table(['run', 'requests/s (2xx)', 'p99 ms', 'non-2xx + errors', '÷ echo', 'server CPU µs/request', 'machine CPU µs/request', 'idle cores'], rows),
  );
  console.log(
    `\nmedian ratio to the echo: floor ${med(ratios.map((r) => r.floor)).toFixed(2)}, engine ${med(ratios.map((r) => r.engine)).toFixed(2)}` +
      `; the floor committed ${n} ledger rows`,
  );
} finally {
  await Promise.all([echo.stop(), floor.stop(), engine.stop()]);
  await cleanup(engineIso);
  await cleanup(floorIso);
}
