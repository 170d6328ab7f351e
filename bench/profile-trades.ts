/**
 * Development aid, not part of `npm run bench`: runs the built engine under
 * `node --cpu-prof` while 64 connections post trades (the trades benchmark's
 * load), then prints where its CPU went, by package or file and by function
 * (self time). The profile covers start-up and seeding too.
 *
 *   npm run build && npx tsx bench/profile-trades.ts [seconds=10] [dir=/tmp/prof] [connections=64]
 *
 * ENGINE_ENV='{"COMMIT_CONCURRENCY":"1"}' passes extra settings to the engine;
 * BATCH=100 posts the same fills to POST /trades, 100 to a request.
 */
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ENGINE_NODE_FLAGS, cleanup, isolation, load, startEngine } from './harness.js';
import { ACCOUNTS, batchBodies, seedTradeAccounts, tradeBodies } from './trades.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount: number;
}

const seconds = Number.parseInt(process.argv[2] ?? '10', 10);
const dir = process.argv[3] ?? '/tmp/prof';
mkdirSync(dir, { recursive: true });
const before = new Set(readdirSync(dir));
const iso = isolation();
const extra = JSON.parse(process.env.ENGINE_ENV ?? '{}') as Record<string, string>;
// The profile is written when the engine exits, which stop() (SIGTERM) waits for.
const engine = await startEngine(iso, extra, [...ENGINE_NODE_FLAGS, '--cpu-prof', `--cpu-prof-dir=${dir}`]);
try {
  await seedTradeAccounts(engine.base);
  const batch = Number.parseInt(process.env.BATCH ?? '1', 10);
  const connections = Number.parseInt(process.argv[4] ?? '64', 10);
  const r =
    batch > 1
      ? await load(engine.base, connections, seconds, batchBodies(ACCOUNTS, batch), { path: '/trades', distinct: Math.ceil(20_000 / batch) })
      : await load(engine.base, connections, seconds, tradeBodies(ACCOUNTS));
  console.log(`trades/s ${((r.ok * batch) / r.seconds).toFixed(0)}, p50 ${r.p50} ms, p99 ${r.p99} ms, errors ${r.errors + r.non2xx}`);
} finally {
  await engine.stop();
  await cleanup(iso);
}

const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile') && !before.has(f));
if (!file) throw new Error(`no new profile in ${dir}`);
const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { nodes: ProfileNode[]; samples: number[] };
const total = profile.samples.length;
const byFunction = new Map<string, number>();
const byFile = new Map<string, number>();
const add = (m: Map<string, number>, k: string, n: number) => m.set(k, (m.get(k) ?? 0) + n);
for (const node of profile.nodes) {
  const url = node.callFrame.url.replace(/^file:\/\/.*?\/dist\//, 'dist/').replace(/.*node_modules\//, 'nm/');
  add(byFunction, `${node.callFrame.functionName || '(anonymous)'} ${url}:${node.callFrame.lineNumber}`, node.hitCount);
  const pkg = url.startsWith('nm/') ? url.split('/').slice(0, url.startsWith('nm/@') ? 3 : 2).join('/') : url || node.callFrame.functionName;
  add(byFile, pkg, node.hitCount);
}
const top = (m: Map<string, number>, k: number) =>
  [...m]
    .sort((a, b) => b[1] - a[1])
    .slice(0, k)
    .map(([name, n]) => `${((100 * n) / total).toFixed(1).padStart(5)} %  ${name}`)
    .join('\n');
console.log(`${join(dir, file)}: ${total} samples\n\nby package or file:\n${top(byFile, 25)}\n\nby function:\n${top(byFunction, 40)}`);
