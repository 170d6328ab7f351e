/**
 * Development aid, not part of `npm run bench`: where the engine's
 * allocations come from under the trades benchmark's load, in bytes per
 * trade. Runs the engine (its TypeScript source, through tsx) in this process (so the inspector can reach
 * it) with V8's sampling heap profiler counting every sampled allocation,
 * the ones already collected included, and prints them by package, by
 * allocating function, and inclusive for the engine's own functions.
 *
 *   npx tsx bench/alloc-profile.ts [seconds=6]
 *
 * Sampled every 4 KB on average, so small figures are approximate.
 */
import { Session } from 'node:inspector/promises';
import { pino } from 'pino';
import { loadConfig } from '../src/config.js';
import { createEngine } from '../src/engine.js';
import { buildApp } from '../src/http/app.js';
import { cleanup, engineEnv, freePort, isolation, load } from './harness.js';
import { ACCOUNTS, seedTradeAccounts, tradeBodies } from './trades.js';

interface SamplingNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: SamplingNode[];
}

const seconds = Number.parseInt(process.argv[2] ?? '6', 10);
const iso = isolation();
const port = await freePort();
const log = pino({ level: 'warn' });
const engine = await createEngine(loadConfig({ ...process.env, ...engineEnv(iso), PORT: String(port) }), log);
const app = await buildApp(engine, { logger: log, docs: false });
let root: SamplingNode;
let trades: number;
try {
  await app.listen({ host: '127.0.0.1', port });
  const base = `http://127.0.0.1:${port}`;
  await seedTradeAccounts(base);
  await load(base, 64, 3, tradeBodies(ACCOUNTS)); // warm-up, not counted
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.startSampling', {
    samplingInterval: 4096,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  const r = await load(base, 64, seconds, tradeBodies(ACCOUNTS));
  root = ((await session.post('HeapProfiler.stopSampling')) as { profile: { head: SamplingNode } }).profile.head;
  session.disconnect();
  trades = r.ok;
  console.log(`${r.rps.toFixed(0)} trades/s while sampling (the profiler slows the engine), ${trades} trades`);
} finally {
  await app.close();
  await engine.close();
  await cleanup(iso);
}

const name = (n: SamplingNode) => `${n.callFrame.functionName || '(anonymous)'} ${shortUrl(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
const shortUrl = (url: string) => url.replace(/^.*node_modules\//, '').replace(/^file:.*\/src\//, 'src/');
const packageOf = (url: string) =>
  url.includes('node_modules/') ? url.replace(/.*node_modules\/((@[^/]+\/)?[^/]+).*/, '$1') : url.startsWith('node:') ? 'node' : url ? shortUrl(url) : '(V8 / native)';
const self = new Map<string, number>();
const inclusive = new Map<string, number>();
const byPackage = new Map<string, number>();
const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
let total = 0;
const walk = (n: SamplingNode, above: ReadonlySet<string>) => {
  const k = name(n);
  total += n.selfSize;
  add(self, k, n.selfSize);
  add(byPackage, packageOf(n.callFrame.url), n.selfSize);
  const stack = new Set(above).add(k);
  for (const f of stack) add(inclusive, f, n.selfSize);
  for (const c of n.children) walk(c, stack);
};
walk(root, new Set());
const top = (m: Map<string, number>, k: number, keep: (key: string) => boolean = () => true) =>
  [...m]
    .filter(([key]) => keep(key))
    .sort((a, b) => b[1] - a[1])
    .slice(0, k)
    .map(([key, v]) => `${(v / trades).toFixed(0).padStart(7)} B  ${key}`)
    .join('\n');
console.log(`allocated: ${(total / trades).toFixed(0)} B per trade`);
console.log(`\nby package:\n${top(byPackage, 15)}`);
console.log(`\nby allocating function:\n${top(self, 25)}`);
console.log(`\ninclusive, the engine's functions:\n${top(inclusive, 25, (k) => k.includes(' src/'))}`);
process.exit(0);
