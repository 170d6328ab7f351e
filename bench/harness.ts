/**
 * Shared pieces of the benchmarks: engine child processes on a fresh schema
 * and key prefix, HTTP helpers, wrk runs, RSS, clean-up. Loopback only.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import postgres from 'postgres';

export const REDIS_URL = process.env.BENCH_REDIS_URL ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
export const DATABASE_URL = process.env.BENCH_DATABASE_URL ?? process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

export interface Child {
  readonly proc: ChildProcess;
  readonly base: string;
  rssMiB(): number;
  /** CPU time the process has used so far (user + system), in seconds. */
  cpuSeconds(): number;
  stop(): Promise<void>;
}

/**
 * A process's or thread's `stat` file (/proc/<pid>/stat, /proc/<pid>/task/<tid>/stat):
 * its command name, and its CPU time so far (utime + stime, fields 14 and 15
 * after the ')' of the name) in clock ticks, 100 per second here.
 */
export function procStat(path: string): { comm: string; ticks: number } {
  const stat = readFileSync(path, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), ticks: Number(fields[11]) + Number(fields[12]) };
}

/** Polls `url` every 100 ms until it answers 2xx; throws after `ms`. */
export async function waitFor(url: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const res = await fetch(url);
      if (res.ok) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not come up`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `stdoutFile`: where the child's standard output goes (a GC trace, say); by default nowhere. */
function child(cmd: string, args: string[], env: Record<string, string>, port: number, readyPath: string, stdoutFile?: string): Promise<Child> {
  const stdout = stdoutFile === undefined ? 'ignore' : openSync(stdoutFile, 'w');
  const proc = spawn(cmd, args, { env: { ...process.env, ...env, PORT: String(port) }, stdio: ['ignore', stdout, 'inherit'] });
  const base = `http://127.0.0.1:${port}`;
  const up = waitFor(base + readyPath, 20_000).catch((error: unknown) => {
    proc.kill('SIGKILL');
    throw error;
  });
  return up.then(() => ({
    proc,
    base,
    rssMiB() {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'));
      return m ? Number.parseInt(m[1]!, 10) / 1024 : Number.NaN;
    },
    cpuSeconds() {
      return procStat(`/proc/${proc.pid}/stat`).ticks / 100;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      }),
  }));
}

export interface Isolation {
  readonly schema: string;
  readonly prefix: string;
}

export function isolation(): Isolation {
  const id = randomBytes(4).toString('hex');
  return { schema: `bench_${id}`, prefix: `bench_${id}` };
}

/** Node's flags for the engine, as `npm start` passes them (a larger young generation: fewer scavenges per request). */
export const ENGINE_NODE_FLAGS = ['--max-semi-space-size=32'];

/**
 * The benchmarks' admin key: the engine takes it as ADMIN_API_KEY (an admin
 * key that is not stored), and post(), request() and load() send it unless
 * told otherwise. A fixed, public value: the engine under a benchmark listens
 * on loopback only, on a throw-away schema and key prefix.
 */
export const BENCH_ADMIN_KEY = 'bench-admin-key-not-a-secret-0123456789abcdef';

/** The `Authorization` header value for a key. */
export const bearer = (key: string): string => `Bearer ${key}`;

/** The engine's environment for one benchmark: the local stores, an isolated schema and key prefix, quiet logs, the bench admin key. */
export function engineEnv(iso: Isolation, env: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL,
    DATABASE_URL,
    DATABASE_SCHEMA: iso.schema,
    REDIS_KEY_PREFIX: iso.prefix,
    LOG_LEVEL: 'warn',
    HOST: '127.0.0.1',
    ADMIN_API_KEY: BENCH_ADMIN_KEY,
    ...env,
  };
}

export async function startEngine(
  iso: Isolation,
  env: Record<string, string> = {},
  nodeFlags: readonly string[] = ENGINE_NODE_FLAGS,
  entry = 'dist/main.js',
  stdoutFile?: string,
): Promise<Child> {
  return child(process.execPath, [...nodeFlags, entry], engineEnv(iso, env), await freePort(), '/ready', stdoutFile);
}

export async function startEcho(): Promise<Child> {
  return child(process.execPath, ['bench/echo-server.mjs'], {}, await freePort(), '/health');
}

/**
 * The storage floor (bench/floor-server.mjs): a bare route doing only a
 * trade's durable I/O, on its own schema and key prefix. Needs `npm run build`.
 */
export async function startFloor(iso: Isolation, nodeFlags: readonly string[] = [], stdoutFile?: string): Promise<Child> {
  return child(process.execPath, [...nodeFlags, 'bench/floor-server.mjs'], engineEnv(iso), await freePort(), '/health', stdoutFile);
}

/** The machine's CPU time so far by kind (/proc/stat's first line), in ticks of 1/100 s. */
export function machineTicks(): Record<string, number> {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = f as [number, number, number, number, number, number, number, number];
  return { user: user + nice, system, idle: idle + iowait, irq: irq + softirq, steal };
}

/** A load run with the CPU it cost, per answered request: the server's own (user + system) and the whole machine's (every process and the kernel). */
export interface Costed {
  readonly r: LoadResult;
  readonly cpuUs: number;
  readonly machineUs: number;
}

/** Runs `f` (a load on `server`) and returns its result with the CPU used meanwhile, in µs per answered request. */
export async function withCpu(server: Child, f: () => Promise<LoadResult>): Promise<Costed> {
  const cpu = server.cpuSeconds();
  const before = machineTicks();
  const r = await f();
  const after = machineTicks();
  const ok = Math.max(1, r.ok);
  const busyTicks = (['user', 'system', 'irq', 'steal'] as const).reduce((sum, k) => sum + after[k]! - before[k]!, 0);
  return { r, cpuUs: ((server.cpuSeconds() - cpu) * 1e6) / ok, machineUs: (busyTicks / 100) * 1e6 / ok };
}

export async function cleanup(iso: Isolation): Promise<void> {
  const sql = postgres(DATABASE_URL, { onnotice: () => {} });
  await sql`DROP SCHEMA IF EXISTS ${sql(iso.schema)} CASCADE`;
  await sql.end();
  const redis = new Redis(REDIS_URL);
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${iso.prefix}:*`, 'COUNT', 5000);
    if (keys.length) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  redis.disconnect();
}

/** A POST that must succeed (2xx), as `key` (the bench admin key by default; null: no Authorization header). */
export async function post(base: string, path: string, body: unknown, key: string | null = BENCH_ADMIN_KEY): Promise<any> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (key !== null) headers.authorization = bearer(key);
  const res = await fetch(base + path, { method: 'POST', headers, body: JSON.stringify(body) });
  const json = await res.json();
  if (!res.ok) throw new Error(`${path} → ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** Creates an API key of `role` through POST /admin/keys (as the bench admin key) and returns its secret. */
export async function createKey(base: string, role: string, name: string, accountIds?: number[]): Promise<string> {
  const created = await post(base, '/admin/keys', { name, role, ...(accountIds === undefined ? {} : { account_ids: accountIds }) });
  if (typeof created?.key !== 'string' || created.role !== role) throw new Error(`POST /admin/keys answered ${JSON.stringify(created)}`);
  return created.key;
}

/** Runs `f` over `items` with at most `n` in flight. */
export async function pool<T>(items: T[], n: number, f: (item: T) => Promise<unknown>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (i < items.length) await f(items[i++]!);
    }),
  );
}

export interface LoadResult {
  readonly ok: number;
  readonly errors: number;
  readonly non2xx: number;
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly seconds: number;
}

export interface LoadOptions {
  /** How many distinct request bodies to cycle through. */
  readonly distinct?: number;
  /** The key every request carries as "Authorization: Bearer <key>" (the bench admin key by default; null: none). */
  readonly key?: string | null;
  /** The path every request is POSTed to (default /trade). */
  readonly path?: string;
}

/**
 * The load tool: wrk (C, one epoll loop per thread), driving pre-built requests
 * from a file of JSON bodies through bench/wrk-load.lua. A load generator in
 * this process (autocannon) cost as much CPU per request as the echo server it
 * measured, on a machine whose two cores it shares with the engine, Redis and
 * PostgreSQL; wrk costs a fraction of that. `bench/setup.sh` installs it.
 */
export async function load(url: string, connections: number, seconds: number, body: () => string, options: LoadOptions = {}): Promise<LoadResult> {
  ensureWrk();
  const { distinct = 20_000, key = BENCH_ADMIN_KEY, path = '/trade' } = options;
  const dir = mkdtempSync(join(tmpdir(), 'bench-'));
  const bodies = join(dir, 'bodies.txt');
  writeFileSync(bodies, Array.from({ length: distinct }, body).join('\n') + '\n');
  try {
    const threads = Math.min(2, connections);
    // The script's arguments: the bodies file, the Authorization header's value ('' for none), the path.
    // An argument, not the command line's -H: the script builds each request itself with wrk.format.
    const scriptArgs = [bodies, key === null ? '' : bearer(key), path];
    const out = await run('wrk', [`-t${threads}`, `-c${connections}`, `-d${seconds}s`, '--timeout', '10s', '-s', WRK_SCRIPT, url, '--', ...scriptArgs]);
    const line = out.split('\n').find((l) => l.startsWith('{"requests"'));
    if (!line) throw new Error(`wrk printed no summary:\n${out}`);
    const r = JSON.parse(line) as { requests: number; duration_us: number; connect: number; read: number; write: number; status: number; timeout: number; p50_us: number; p99_us: number };
    const duration = r.duration_us / 1e6;
    // wrk counts a non-2xx/3xx answer in `requests` and in `status`.
    const ok = r.requests - r.status;
    return {
      ok,
      errors: r.connect + r.read + r.write + r.timeout,
      non2xx: r.status,
      rps: ok / duration,
      p50: Number((r.p50_us / 1000).toFixed(1)),
      p99: Number((r.p99_us / 1000).toFixed(1)),
      seconds: duration,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const WRK_SCRIPT = fileURLToPath(new URL('./wrk-load.lua', import.meta.url));

function ensureWrk(): void {
  if (spawnSync('wrk', ['--version']).error === undefined) return;
  const setup = fileURLToPath(new URL('./setup.sh', import.meta.url));
  process.stderr.write('wrk not found; installing it with bench/setup.sh\n');
  const r = spawnSync('bash', [setup], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error('wrk is needed for the load benchmarks: run `bash bench/setup.sh` (apt-get install wrk) as root');
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} exited with ${code}:\n${out}`))));
  });
}

export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(cells[0]!), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.slice(1).map(line)].join('\n');
}

export interface Timed {
  readonly status: number;
  readonly json: any;
  /** Wall time of the HTTP round trip, body read included. */
  readonly ms: number;
}

/** Keep-alive connections for request(): node:http costs the bench far less CPU per request than fetch. */
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

/**
 * One HTTP request with a deadline, as `key` (the bench admin key by default;
 * null: no Authorization header); returns status, parsed body and wall time.
 * Throws only on a network error or timeout.
 */
export function request(
  base: string,
  method: 'GET' | 'POST' | 'PUT',
  path: string,
  body?: unknown,
  timeoutMs = 30_000,
  key: string | null = BENCH_ADMIN_KEY,
): Promise<Timed> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const headers: http.OutgoingHttpHeaders = payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) };
  if (key !== null) headers.authorization = bearer(key);
  return new Promise<Timed>((resolve, reject) => {
    const start = performance.now();
    const req = http.request(base + path, { method, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const ms = performance.now() - start;
        const text = Buffer.concat(chunks).toString('utf8');
        let json: any = null;
        try {
          json = text ? JSON.parse(text) : null;
        } catch {
          json = text;
        }
        resolve({ status: res.statusCode ?? 0, json, ms });
      });
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${path} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** Nearest-rank percentile (p in 0..100) of a list of numbers. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
