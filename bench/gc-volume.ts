/**
 * Development aid, not part of `npm run bench`: how much the engine allocates
 * and keeps per trade under the trades benchmark's load, from V8's own
 * `--trace-gc-nvp` lines for each scavenge (allocated, survived, promoted,
 * pause). bench/gc-trace.ts gives the pauses' distribution; this gives the
 * volumes behind them.
 *
 *   npm run build && npx tsx bench/gc-volume.ts [node flags...]
 *
 * ENTRY=bench/floor-server.mjs measures the storage floor (see bench/trades.ts)
 * instead; ENTRY=dist-base/main.js another build of the engine.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ENGINE_NODE_FLAGS, cleanup, isolation, load, startEngine, startFloor } from './harness.js';
import { ACCOUNTS, seedTradeAccounts, tradeBodies } from './trades.js';

const seconds = 8;
const flags = [...(process.argv.length > 2 ? process.argv.slice(2) : ENGINE_NODE_FLAGS), '--trace-gc-nvp'];
const entry = process.env.ENTRY ?? 'dist/main.js';
const isFloor = entry.includes('floor-server');
const dir = mkdtempSync(join(tmpdir(), 'gc-volume-'));
const logFile = join(dir, 'gc.log');
const iso = isolation();
const server = isFloor ? await startFloor(iso, flags, logFile) : await startEngine(iso, {}, flags, entry, logFile);
try {
  if (!isFloor) await seedTradeAccounts(server.base);
  await load(server.base, 64, 3, tradeBodies(ACCOUNTS)); // warm-up, not counted
  const mark = readFileSync(logFile, 'utf8').length;
  const r = await load(server.base, 64, seconds, tradeBodies(ACCOUNTS));
  const text = readFileSync(logFile, 'utf8').slice(mark);
  const field = (line: string, key: string) => Number(new RegExp(`\\b${key}=([\\d.]+)`).exec(line)?.[1] ?? 0);
  const scavenges = text.split('\n').filter((l) => l.includes(' gc=s '));
  const full = text.split('\n').filter((l) => / gc=m[cs] /.test(l));
  const sum = (lines: string[], key: string) => lines.reduce((s, l) => s + field(l, key), 0);
  const trades = r.ok;
  const perTrade = (bytes: number) => `${(bytes / trades / 1024).toFixed(1)} KB`;
  console.log(`${entry}: ${r.rps.toFixed(0)} requests/s, p99 ${r.p99} ms, ${trades} answered in ${seconds} s`);
  console.log(
    `scavenges: ${scavenges.length}, ${(sum(scavenges, 'pause') / scavenges.length).toFixed(2)} ms each, ` +
      `${((sum(scavenges, 'pause') * 1000) / trades).toFixed(1)} µs per request; full collections: ${full.length}, ${sum(full, 'pause').toFixed(0)} ms in all`,
  );
  console.log(
    `per request: allocated ${perTrade(sum(scavenges, 'allocated'))}, survived a scavenge ${perTrade(sum(scavenges, 'new_space_survived'))}, ` +
      `promoted ${perTrade(sum(scavenges, 'promoted'))}`,
  );
} finally {
  await server.stop();
  await cleanup(iso);
  rmSync(dir, { recursive: true, force: true });
}
