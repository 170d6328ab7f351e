/**
 * Development aid: runs the engine under `node --cpu-prof` while 64 connections
 * post trades, then prints where its CPU went (self time by function and file).
 * `npx tsx bench/profile-trades.ts [seconds] [outdir]` after `npm run build`.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DATABASE_URL, REDIS_URL, cleanup, freePort, isolation, load, pool, post } from './harness.js';

const seconds = Number.parseInt(process.argv[2] ?? '10', 10);
const dir = process.argv[3] ?? '/tmp/prof';
const iso = isolation();
const port = await freePort();
const proc = spawn(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${dir}`, 'dist/main.js'], {
  env: { ...process.env, REDIS_URL, DATABASE_URL, DATABASE_SCHEMA: iso.schema, REDIS_KEY_PREFIX: iso.prefix, LOG_LEVEL: 'warn', HOST: '127.0.0.1', PORT: String(port), ...JSON.parse(process.env.ENGINE_ENV ?? '{}') },
  stdio: ['ignore', 'ignore', 'inherit'],
});
const base = `http://127.0.0.1:${port}`;
for (let i = 0; ; i++) {
  try { if ((await fetch(base + '/ready')).ok) break; } catch { /* not yet */ }
  await new Promise((r) => setTimeout(r, 100));
}
await post(base, '/mark-price', { symbol: 'BTC-PERP', price: '50000' });
await post(base, '/mark-price', { symbol: 'ETH-PERP', price: '3000' });
await pool(Array.from({ length: 1000 }, (_, i) => i + 1), 32, (id) => post(base, `/accounts/${id}/deposit`, { amount: '1000000000' }));
let n = 0;
const r = await load(base, 64, seconds, () => {
  n++;
  const btc = n % 3 !== 0;
  return JSON.stringify({ account_id: 1 + ((n * 7919) % 1000), symbol: btc ? 'BTC-PERP' : 'ETH-PERP', side: n % 2 ? 'BUY' : 'SELL', quantity: btc ? `0.0${1 + (n % 9)}` : `0.${1 + (n % 9)}`, price: btc ? String(49900 + (n % 200)) : String(2990 + (n % 20)) });
});
console.log(`trades/s ${r.rps.toFixed(0)} p50 ${r.p50} p99 ${r.p99} errors ${r.errors + r.non2xx}`);
await new Promise<void>((res) => { proc.once('exit', () => res()); proc.kill('SIGTERM'); });
await cleanup(iso);
const file = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(dir, f)).sort().pop()!;
const prof = JSON.parse(readFileSync(file, 'utf8')) as { nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount: number }[]; samples: number[] };
const total = prof.samples.length;
const byFn = new Map<string, number>();
const byFile = new Map<string, number>();
for (const node of prof.nodes) {
  const url = node.callFrame.url.replace(/^file:\/\/\/work\/main\//, '').replace(/.*node_modules\//, 'nm/');
  const fn = `${node.callFrame.functionName || '(anon)'} ${url}:${node.callFrame.lineNumber}`;
  byFn.set(fn, (byFn.get(fn) ?? 0) + node.hitCount);
  const f = url.startsWith('nm/') ? url.split('/').slice(0, url.startsWith('nm/@') ? 3 : 2).join('/') : url || node.callFrame.functionName;
  byFile.set(f, (byFile.get(f) ?? 0) + node.hitCount);
}
const top = (m: Map<string, number>, k: number) => [...m].sort((a, b) => b[1] - a[1]).slice(0, k).map(([name, c]) => `${((100 * c) / total).toFixed(1).padStart(5)}%  ${name}`).join('\n');
console.log(`profile ${file}: ${total} samples\n--- by package/file\n${top(byFile, 30)}\n--- by function\n${top(byFn, 45)}`);
