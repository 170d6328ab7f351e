/**
 * Development aid, not part of `npm run bench`: the engine's garbage
 * collection under the trades benchmark's load. Runs the built engine with
 * `--trace-gc` while 64 connections post trades, then prints the scavenges'
 * and full collections' pauses (main thread, from V8's own trace).
 *
 *   npm run build && npx tsx bench/gc-trace.ts [rounds=3] [seconds=8] [node flags...]
 *
 * ENTRY=dist-base/main.js runs another build (see bench/ab.ts).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ENGINE_NODE_FLAGS, cleanup, isolation, load, startEngine } from './harness.js';
import { ACCOUNTS, seedTradeAccounts, tradeBodies } from './trades.js';

const rounds = Number.parseInt(process.argv[2] ?? '3', 10);
const seconds = Number.parseInt(process.argv[3] ?? '8', 10);
const flags = process.argv.length > 4 ? process.argv.slice(4) : ENGINE_NODE_FLAGS;
const dir = mkdtempSync(join(tmpdir(), 'gc-trace-'));
const logFile = join(dir, 'gc.log');
const iso = isolation();
const engine = await startEngine(iso, {}, [...flags, '--trace-gc'], process.env.ENTRY, logFile);
try {
  await seedTradeAccounts(engine.base);
  for (let i = 1; i <= rounds; i++) {
    const r = await load(engine.base, 64, seconds, tradeBodies(ACCOUNTS));
    console.log(`round ${i}: ${r.rps.toFixed(0)} trades/s, p50 ${r.p50} ms, p99 ${r.p99} ms, errors ${r.errors + r.non2xx}`);
  }
} finally {
  await engine.stop();
  await cleanup(iso);
}

// Lines look like: "[pid:0x…]  12375 ms: Scavenge 122.6 (175.9) -> 100.9 (175.9) MB, 4.07 / 0.00 ms  …"
const pauses = (kind: string) =>
  readFileSync(logFile, 'utf8')
    .split('\n')
    .filter((l) => l.includes(`: ${kind} `))
    .map((l) => Number(/MB, ([\d.]+) \//.exec(l)?.[1] ?? 'NaN')) // milliseconds, not money
    .filter((x) => !Number.isNaN(x))
    .sort((a, b) => a - b);
const at = (xs: number[], q: number) => xs[Math.min(xs.length - 1, Math.floor(q * xs.length))]?.toFixed(2) ?? '-';
for (const kind of ['Scavenge', 'Mark-Compact']) {
  const xs = pauses(kind);
  const total = xs.reduce((a, b) => a + b, 0);
  console.log(`${kind}: ${xs.length} pauses, p50 ${at(xs, 0.5)} ms, p90 ${at(xs, 0.9)} ms, max ${at(xs, 1)} ms, total ${total.toFixed(0)} ms`);
}
rmSync(dir, { recursive: true, force: true });
