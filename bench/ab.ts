/**
 * Development aid, not part of `npm run bench`: A/B of two engine settings
 * under the trades benchmark's load at 64 connections, alternating the two
 * engines round by round so the machine's drift hits both alike. Prints
 * trades/s and engine CPU µs per trade for each round.
 *
 *   npm run build && npx tsx bench/ab.ts '{"A":{}}' '{"B":{"COMMIT_CONCURRENCY":"1"}}' [rounds=3] [seconds=6]
 *
 * Each argument is {"label": {ENV: value, ...}}; "NODE_FLAGS" in it replaces the engine's Node flags,
 * "ENTRY" the engine's entry script (to compare two builds: copy one build's
 * dist/ to a directory inside the checkout, e.g. dist-base/, and name its main.js).
 */
import { readdirSync } from 'node:fs';
import { ENGINE_NODE_FLAGS, cleanup, isolation, load, procStat, startEngine, type Child } from './harness.js';
import { ACCOUNTS, seedTradeAccounts, tradeBodies } from './trades.js';

/** CPU ticks (user + system) of each thread of a process. */
function threadTicks(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    out.set(Number(tid), procStat(`/proc/${pid}/task/${tid}/stat`).ticks);
  }
  return out;
}

type Spec = { label: string; env: Record<string, string> };
const specs: Spec[] = process.argv.slice(2, 4).map((a) => {
  const [label, env] = Object.entries(JSON.parse(a) as Record<string, Record<string, string>>)[0]!;
  return { label, env };
});
const rounds = Number.parseInt(process.argv[4] ?? '3', 10);
const seconds = Number.parseInt(process.argv[5] ?? '6', 10);

const engines: { spec: Spec; child: Child; iso: ReturnType<typeof isolation> }[] = [];
for (const spec of specs) {
  const iso = isolation();
  const { NODE_FLAGS, ENTRY, ...env } = spec.env;
  const child = await startEngine(iso, env, NODE_FLAGS === undefined ? ENGINE_NODE_FLAGS : NODE_FLAGS.split(' ').filter(Boolean), ENTRY);
  await seedTradeAccounts(child.base);
  await load(child.base, 64, 2, tradeBodies(ACCOUNTS)); // warm-up
  engines.push({ spec, child, iso });
}
try {
  for (let r = 1; r <= rounds; r++) {
    for (const e of engines) {
      const cpu = e.child.cpuSeconds();
      const threadsBefore = threadTicks(e.child.proc.pid!);
      const res = await load(e.child.base, 64, seconds, tradeBodies(ACCOUNTS));
      const threadsAfter = threadTicks(e.child.proc.pid!);
      const us = ((e.child.cpuSeconds() - cpu) * 1e6) / Math.max(1, res.ok);
      // Each busy thread's share of one core over the run (main thread first).
      const shares = [...threadsAfter]
        .map(([tid, ticks]) => [tid, (ticks - (threadsBefore.get(tid) ?? 0)) / 100 / res.seconds] as const)
        .filter(([, share]) => share >= 0.05)
        .sort((a, b) => (a[0] === e.child.proc.pid ? -1 : b[0] === e.child.proc.pid ? 1 : b[1] - a[1]))
        .map(([, share]) => `${(share * 100).toFixed(0)}%`);
      console.log(
        `round ${r} ${e.spec.label.padEnd(12)} ${res.rps.toFixed(0).padStart(6)} trades/s  p99 ${String(res.p99).padStart(6)} ms  ${us.toFixed(0)} µs CPU/trade  threads ${shares.join(' ')}  errors ${res.errors + res.non2xx}`,
      );
    }
  }
} finally {
  for (const e of engines) {
    await e.child.stop();
    await cleanup(e.iso);
  }
}
