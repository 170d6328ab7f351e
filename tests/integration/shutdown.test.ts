/**
 * Shutdown has a deadline: an engine child process whose PostgreSQL stops
 * answering (a blackholing TCP proxy) while a commit is in flight still exits
 * on SIGTERM, non-zero, within SHUTDOWN_TIMEOUT_MS, alone and as a cluster of
 * workers. With PostgreSQL answering it exits 0 well before the deadline.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { inspector, newIsolation, type Inspector, type Isolation } from '../helpers/engine.js';
import { send } from '../helpers/http.js';
import { EngineProcess, freePort } from '../helpers/processes.js';
import { TcpProxy, targetOf, viaProxy } from '../helpers/tcp-proxy.js';

const DEADLINE_MS = 1500;
/** Process start-up aside, how late after the deadline an exit may come on a busy two-core machine. */
const MARGIN_MS = 2500;

let iso: Isolation;
let db: Inspector;
let proxy: TcpProxy;
let engine: EngineProcess | null = null;

beforeAll(async () => {
  iso = newIsolation();
  db = inspector(iso);
  const pg = targetOf(iso.databaseUrl, 5432);
  proxy = new TcpProxy(pg.host, pg.port);
  await proxy.start();
});

afterEach(async () => {
  await engine?.kill();
  engine = null;
  await proxy.restore();
});

afterAll(async () => {
  await proxy?.close();
  await db?.destroy();
});

async function start(env: Record<string, string> = {}): Promise<EngineProcess> {
  engine = new EngineProcess(
    {
      REDIS_URL: iso.redisUrl,
      DATABASE_URL: viaProxy(iso.databaseUrl, proxy.listeningPort),
      DATABASE_SCHEMA: iso.schema,
      REDIS_KEY_PREFIX: iso.prefix,
      SHUTDOWN_TIMEOUT_MS: String(DEADLINE_MS),
      ...env,
    },
    await freePort(),
  );
  await engine.start();
  return engine;
}

/** A deposit whose commit PostgreSQL never confirms: answered 503, the commit left in flight. */
async function hangACommit(e: EngineProcess, accountId: number): Promise<void> {
  const res = await send(e.base, 'POST', `/accounts/${accountId}/deposit`, { amount: '5' });
  expect(res.status).toBe(503);
}

/** SIGTERM, and how long the process took to exit and with what code. */
async function terminate(e: EngineProcess): Promise<{ code: number | null; ms: number }> {
  const started = performance.now();
  const code = await e.terminate();
  engine = null;
  return { code, ms: performance.now() - started };
}

describe('shutdown deadline', () => {
  it('exits 0 well before the deadline when the stores answer', async () => {
    const e = await start();
    expect((await send(e.base, 'POST', '/accounts/1/deposit', { amount: '5' })).status).toBe(200);
    const { code, ms } = await terminate(e);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(DEADLINE_MS);
  });

  it('with PostgreSQL hung under a commit, exits 1 at the deadline and says why', async () => {
    const e = await start();
    expect((await send(e.base, 'POST', '/accounts/2/deposit', { amount: '5' })).status).toBe(200);
    proxy.blackhole();
    await hangACommit(e, 2);
    const log = () => e.stderr;
    const { code, ms } = await terminate(e);
    expect(code).toBe(1);
    expect(ms).toBeGreaterThanOrEqual(DEADLINE_MS - 100);
    expect(ms).toBeLessThan(DEADLINE_MS + MARGIN_MS);
    expect(log()).toContain('shutdown did not finish within SHUTDOWN_TIMEOUT_MS');
  });

  it('with WORKERS=2, the supervisor exits 1 once a worker gave up at its deadline', async () => {
    const e = await start({ WORKERS: '2' });
    proxy.blackhole();
    // Separate connections, so both workers are likely to get one; one hung worker is enough.
    await Promise.all([hangACommit(e, 3), hangACommit(e, 4)]);
    const { code, ms } = await terminate(e);
    expect(code).toBe(1);
    expect(ms).toBeGreaterThanOrEqual(DEADLINE_MS - 100);
    expect(ms).toBeLessThan(DEADLINE_MS + MARGIN_MS);
    expect(e.stderr).toContain('shutdown did not finish within SHUTDOWN_TIMEOUT_MS');
    // The workers are gone with it: nothing listens on the port any more.
    await expect(fetch(`${e.base}/ready`)).rejects.toThrow();
  });
});
