/**
 * Keys across engine processes: two engines, A and B, each a
 * child process of its own, sharing PostgreSQL and Redis. A key created
 * through A is accepted by B (which has to learn a key it has not seen); a
 * key revoked through A is refused by A at once and by B within 1 s of the
 * revocation's answer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, inspector, isolationEnv, newIsolation, type Inspector, type Isolation } from '../helpers/engine.js';
import { send } from '../helpers/http.js';
import { EngineProcess, freePort } from '../helpers/processes.js';
import { sleep } from '../helpers/until.js';

const POLL_EVERY_MS = 50;
const WITHIN_MS = 1000;

let iso: Isolation;
let a: EngineProcess;
let b: EngineProcess;
let db: Inspector;

beforeAll(async () => {
  iso = newIsolation();
  const env = isolationEnv(iso);
  a = new EngineProcess(env, await freePort());
  await a.start();
  b = new EngineProcess(env, await freePort());
  await b.start();
  db = inspector(iso);
}, 60_000);

afterAll(async () => {
  await a?.kill();
  await b?.kill();
  await db?.destroy();
});

interface Created {
  key_id: string;
  key: string;
}

const read = (engine: EngineProcess, key: string) => send(engine.base, 'GET', '/margin-report', undefined, 5000, key);

async function create(name: string): Promise<Created> {
  const res = await send(a.base, 'POST', '/admin/keys', { name, role: 'reader' }, 5000, ADMIN_KEY);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body as Created;
}

async function revokeThroughA(keyId: string): Promise<void> {
  const res = await send(a.base, 'DELETE', `/admin/keys/${keyId}`, undefined, 5000, ADMIN_KEY);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  expect(res.body.revoked_at).toEqual(expect.any(String));
}

/** Asks B every 50 ms until it refuses `key`; the time since `since`, or null if it still accepted it after `limitMs`. */
async function untilBRefuses(key: string, since: number, limitMs: number): Promise<number | null> {
  for (;;) {
    const res = await read(b, key);
    const elapsed = performance.now() - since;
    if (res.status === 401) {
      expect(res.body.error.code).toBe('UNAUTHENTICATED');
      return elapsed;
    }
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    if (elapsed > limitMs) return null;
    await sleep(POLL_EVERY_MS);
  }
}

describe('a key created through A and revoked through A', () => {
  it('is accepted by B on first use, refused by A at once, and refused by B within 1 s of the revocation', async () => {
    const k = await create('across');
    // B has never seen this key.
    const first = await read(b, k.key);
    expect(first.status, 'B refused a key created through A a moment ago').toBe(200);

    await revokeThroughA(k.key_id);
    const answered = performance.now();
    expect((await read(a, k.key)).status).toBe(401);
    const ms = await untilBRefuses(k.key, answered, 2 * WITHIN_MS);
    console.log(`B refused the revoked key ${ms === null ? 'not within 2 s' : `${ms.toFixed(0)} ms`} after the revocation's answer`);
    expect(ms, 'B still accepted the revoked key').not.toBeNull();
    expect(ms!).toBeLessThanOrEqual(WITHIN_MS);
  });

  it('B refuses a revoked key within 1 s, every time (10 revocations of keys B was using)', async () => {
    const latencies: number[] = [];
    for (let i = 0; i < 10; i++) {
      const k = await create(`established-${i}`);
      // A key in use on B: B has had time to learn it by its own polling.
      await sleep(600);
      expect((await read(b, k.key)).status).toBe(200);
      // Revocations land at every phase of B's polling.
      await sleep(Math.random() * 250);
      await revokeThroughA(k.key_id);
      const answered = performance.now();
      expect((await read(a, k.key)).status).toBe(401);
      const ms = await untilBRefuses(k.key, answered, 2 * WITHIN_MS);
      expect(ms, `revocation ${i}: B still accepted the key after 2 s`).not.toBeNull();
      latencies.push(ms!);
    }
    const sorted = [...latencies].sort((x, y) => x - y);
    console.log(
      `revocation → B refuses: min ${sorted[0]!.toFixed(0)} ms, median ${sorted[5]!.toFixed(0)} ms, max ${sorted[9]!.toFixed(0)} ms ` +
        `(polled every ${POLL_EVERY_MS} ms): ${latencies.map((x) => x.toFixed(0)).join(', ')}`,
    );
    expect(Math.max(...latencies)).toBeLessThanOrEqual(WITHIN_MS);
  }, 60_000);
});

describe('a key B has not seen', () => {
  it('is accepted by B on its first use, whenever that falls relative to B\'s polling (100 new keys)', async () => {
    const refused: string[] = [];
    for (let i = 0; i < 100; i++) {
      const k = await create(`fresh-${i}`);
      const res = await read(b, k.key);
      if (res.status !== 200) refused.push(`#${i} ${k.key_id}: ${res.status} ${res.body?.error?.code}`);
      // Later ones are accepted: only the first use is at issue.
      await sleep(Math.random() * 250);
    }
    expect(refused, `B refused ${refused.length} of 100 keys created through A a moment before`).toEqual([]);
  }, 60_000);
});

describe('a revocation that commits after a later key change', () => {
  /**
   * A revocation takes its change version when its statement runs, not when
   * it commits: a creation that starts later may commit first. Modelled here
   * by holding the key's row lock (as a concurrent writer of that row would)
   * for a few hundred milliseconds, within DEPENDENCY_TIMEOUT_MS, while
   * another key is created through A and B learns it.
   */
  it('is still refused by B within 1 s of its answer', async () => {
    const victim = await create('slow-revoke');
    await sleep(600);
    expect((await read(b, victim.key)).status).toBe(200);

    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    const lock = db.sql.begin(async (tx) => {
      await tx`SELECT 1 FROM api_keys WHERE key_id = ${victim.key_id} FOR UPDATE`;
      locked();
      await held;
    });
    await isLocked;
    const revoking = send(a.base, 'DELETE', `/admin/keys/${victim.key_id}`, undefined, 5000, ADMIN_KEY);
    await sleep(30);
    // Meanwhile another key is created and B learns it (B has read every change up to it).
    const other = await create('created-meanwhile');
    expect((await read(b, other.key)).status).toBe(200);
    release();
    await lock;
    const res = await revoking;
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const answered = performance.now();
    expect((await read(a, victim.key)).status).toBe(401);

    const ms = await untilBRefuses(victim.key, answered, 2 * WITHIN_MS);
    expect(ms, 'B still accepted the revoked key 2 s after the revocation answered').not.toBeNull();
    expect(ms!).toBeLessThanOrEqual(WITHIN_MS);
  });
});
