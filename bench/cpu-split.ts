/**
 * Development aid, not part of `npm run bench`: where the machine's CPU goes
 * while connections post trades (64 by default) — the engine, PostgreSQL, Redis and the
 * load tool — in cores (CPU seconds per second) and µs per trade.
 *
 *   npm run build && npx tsx bench/cpu-split.ts [seconds=8] [connections=64]
 *
 * ENGINE_ENV='{"COMMIT_CONCURRENCY":"1"}' passes extra settings to the engine.
 */
import { readdirSync } from 'node:fs';
import { cleanup, isolation, load, machineTicks, procStat, startEngine } from './harness.js';
import { ACCOUNTS, seedTradeAccounts, tradeBodies } from './trades.js';

/** CPU ticks (user + system, 1/100 s) per process group, read off /proc. */
function ticksByGroup(enginePid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let stat: { comm: string; ticks: number };
    try {
      stat = procStat(`/proc/${pid}/stat`);
    } catch {
      continue; // exited meanwhile
    }
    const { comm, ticks } = stat;
    const group = Number(pid) === enginePid ? 'engine' : comm.startsWith('postgres') ? 'postgres' : comm.startsWith('redis') ? 'redis' : comm === 'wrk' ? 'wrk' : 'other';
    out.set(group, (out.get(group) ?? 0) + ticks);
  }
  return out;
}

const seconds = Number.parseInt(process.argv[2] ?? '8', 10);
const connections = Number.parseInt(process.argv[3] ?? '64', 10);
const iso = isolation();
const extra = JSON.parse(process.env.ENGINE_ENV ?? '{}') as Record<string, string>;
const engine = await startEngine(iso, extra);
try {
  await seedTradeAccounts(engine.base);
  await load(engine.base, 64, 2, tradeBodies(ACCOUNTS));
  const before = ticksByGroup(engine.proc.pid!);
  const machineBefore = machineTicks();
  const wall = performance.now();
  const r = await load(engine.base, connections, seconds, tradeBodies(ACCOUNTS));
  const elapsed = (performance.now() - wall) / 1000;
  const after = ticksByGroup(engine.proc.pid!);
  const machineAfter = machineTicks();
  console.log(`trades/s ${r.rps.toFixed(0)}, p50 ${r.p50} ms, p99 ${r.p99} ms, errors ${r.errors + r.non2xx}`);
  // The load tool has exited by now, so its share is in the machine's total, not in a group.
  const machine = Object.entries(machineAfter).map(([k, v]) => `${k} ${((v - machineBefore[k]!) / 100 / elapsed).toFixed(2)}`);
  console.log(`machine (cores): ${machine.join(', ')}`);
  for (const [group, t] of [...after].sort((a, b) => b[1] - a[1])) {
    const cpu = (t - (before.get(group) ?? 0)) / 100;
    console.log(`${group.padEnd(9)} ${(cpu / elapsed).toFixed(2)} cores  ${((cpu / (r.rps * elapsed)) * 1e6).toFixed(0)} µs/trade`);
  }
} finally {
  await engine.stop();
  await cleanup(iso);
}
