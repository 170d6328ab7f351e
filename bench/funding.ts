/**
 * Funding over 100,000 holders: one POST /funding that charges every holder
 * of a symbol (one FUNDING ledger row each, on the account runner's bulk
 * path: a peek, one INSERT and batched Redis applies per chunk of holders),
 * then finds the accounts it endangered.
 *
 * The book is seeded in PostgreSQL directly (a deposit and a trade per
 * account, written as the ledger rows the engine would have written), and
 * Redis is rebuilt from it (`npm run rebuild`) before the engine starts.
 * Seeding over HTTP would take ~40 s and measures nothing here. Holders are
 * half long, half short, 0.001–1 BTC at 50,000, each with 20,000 USDT: the
 * rate (0.0001) endangers nobody, so the figure is the charging itself.
 *
 * Figures: wall time of the POST (its answer comes after every row is
 * committed and applied, and the liquidation pass); the engine's RSS before
 * and after; a repeat of the request (answered from the recorded event).
 * Checks: one row per holder, paid and received equal to the exact sums of
 * the rows, Redis equal to the ledger afterwards (balances spot-checked).
 */
import { spawnSync } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { Decimal } from 'decimal.js';
import { Redis } from 'ioredis';
import postgres from 'postgres';
import { DATABASE_URL, ENGINE_NODE_FLAGS, REDIS_URL, cleanup, engineEnv, isolation, request, startEngine, table, type Child, type Isolation } from './harness.js';

const HOLDERS = 100_000;
const SYMBOL = 'FUND-PERP';
const MARK = '50000';
const RATE = '0.0001';
const TARGET_S = 10;

const log = (line: string) => process.stderr.write(`[bench funding] ${line}\n`);

/** The book, as ledger rows: account g deposits 20,000 and trades (1 + g mod 1000) / 1000 BTC at the mark, long if g is even. */
export async function seedHolders(sql: postgres.Sql, holders: number, symbol: string, mark: string): Promise<void> {
  await sql`INSERT INTO markets (symbol) VALUES (${symbol}) ON CONFLICT DO NOTHING`;
  await sql`INSERT INTO mark_prices (symbol, price, swept_version) VALUES (${symbol}, ${mark}::numeric, 1)`;
  await sql`
    INSERT INTO ledger (account_id, seq, kind, amount, balance)
    SELECT g, 1, 'DEPOSIT', 20000, 20000 FROM generate_series(1, ${holders}::int) g`;
  await sql`
    INSERT INTO ledger (account_id, seq, kind, symbol, side, quantity, price, realised_pnl, position_quantity,
                        position_entry_price, equity, balance, fee, liquidity)
    SELECT g, 2, 'TRADE', ${symbol}, CASE WHEN g % 2 = 0 THEN 'BUY' ELSE 'SELL' END, q, ${mark}::numeric, 0,
           CASE WHEN g % 2 = 0 THEN q ELSE -q END, ${mark}::numeric, 20000, 20000, 0, 'taker'
    FROM generate_series(1, ${holders}::int) g, LATERAL (SELECT ((1 + g % 1000) / 1000.0)::numeric AS q) x`;
}

/** Deletes the engine's Redis keys (the next start rebuilds them from the ledger). */
async function forgetRedis(iso: Isolation): Promise<void> {
  const redis = new Redis(REDIS_URL);
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${iso.prefix}:*`, 'COUNT', 5000);
    if (keys.length) await redis.unlink(...keys);
    cursor = next;
  } while (cursor !== '0');
  redis.disconnect();
}

export async function benchFunding(): Promise<string> {
  const iso = isolation();
  const sql = postgres(DATABASE_URL, { connection: { search_path: iso.schema }, onnotice: () => {} });
  let engine: Child | null = null;
  try {
    // First start: migrations. Then the book goes into the ledger and Redis is rebuilt from it.
    engine = await startEngine(iso);
    await engine.stop();
    log(`seeding ${HOLDERS} holders in postgresql`);
    let t = performance.now();
    await seedHolders(sql, HOLDERS, SYMBOL, MARK);
    const seedS = (performance.now() - t) / 1000;
    await forgetRedis(iso);
    // Redis from the ledger (`npm run rebuild`, built), before the engine starts.
    t = performance.now();
    const rebuilt = spawnSync(process.execPath, ['dist/cli/rebuild.js'], { env: { ...process.env, ...engineEnv(iso), DEPENDENCY_TIMEOUT_MS: '30000' }, stdio: ['ignore', 'pipe', 'inherit'] });
    if (rebuilt.status !== 0) throw new Error(`rebuild exited with ${rebuilt.status}`);
    const rebuildS = (performance.now() - t) / 1000;
    // Development aids: FUNDING_CPU_PROF=<dir> runs the engine under `node --cpu-prof` (the profile is
    // written when it exits); ENGINE_ENV='{"LOG_LEVEL":"info"}' adds engine settings; FUNDING_ENGINE_LOG=<file>
    // keeps the engine's log (its standard output).
    const profileDir = process.env.FUNDING_CPU_PROF;
    const extra = JSON.parse(process.env.ENGINE_ENV ?? '{}') as Record<string, string>;
    const flags = profileDir ? [...ENGINE_NODE_FLAGS, '--cpu-prof', `--cpu-prof-dir=${profileDir}`] : ENGINE_NODE_FLAGS;
    engine = await startEngine(iso, extra, flags, undefined, process.env.FUNDING_ENGINE_LOG);
    log(`seeded in ${seedS.toFixed(1)} s; redis rebuilt from it in ${rebuildS.toFixed(1)} s`);
    const rssBefore = engine.rssMiB();

    const cpuBefore = engine.cpuSeconds();
    const loadBefore = loadavg()[0]!;
    let peak = rssBefore;
    const sampler = setInterval(() => (peak = Math.max(peak, engine!.rssMiB())), 100);
    const run = await request(engine.base, 'POST', '/funding', { symbol: SYMBOL, rate: RATE, funding_id: 'bench-1' }, 120_000);
    clearInterval(sampler);
    if (run.status !== 200) throw new Error(`POST /funding → ${run.status} ${JSON.stringify(run.json)}`);
    const rssAfter = engine.rssMiB();
    const cpu = engine.cpuSeconds() - cpuBefore;
    log(`funding answered in ${run.ms.toFixed(0)} ms: ${JSON.stringify({ ...run.json, liquidated: run.json.liquidated.length })}`);
    const repeat = await request(engine.base, 'POST', '/funding', { symbol: SYMBOL, rate: RATE, funding_id: 'bench-1' });

    const checks: string[] = [];
    const check = (ok: boolean, what: string) => checks.push(`- ${ok ? '✓' : '✗ FAILED:'} ${what}`);
    const [sums] = await sql<{ n: string; paid: string; received: string }[]>`
      SELECT count(*) AS n, coalesce(sum(-amount) FILTER (WHERE amount < 0), 0)::text AS paid, coalesce(sum(amount) FILTER (WHERE amount > 0), 0)::text AS received
      FROM ledger WHERE kind = 'FUNDING' AND funding_id = 'bench-1'`;
    check(Number(sums!.n) === HOLDERS && run.json.accounts === HOLDERS, `one FUNDING row per holder: ${sums!.n} rows, answer accounts ${run.json.accounts}`);
    check(
      new Decimal(sums!.paid).eq(run.json.paid) && new Decimal(sums!.received).eq(run.json.received),
      `paid ${run.json.paid} and received ${run.json.received} equal the rows' exact sums`,
    );
    check(repeat.status === 200 && JSON.stringify(repeat.json) === JSON.stringify(run.json), `the repeated request answers the first result (${repeat.ms.toFixed(1)} ms)`);
    for (const id of [1, 2, 777, HOLDERS]) {
      const p = await request(engine.base, 'GET', `/positions/${id}`);
      const [row] = await sql<{ balance: string }[]>`SELECT balance FROM ledger WHERE account_id = ${id} ORDER BY seq DESC LIMIT 1`;
      check(p.status === 200 && new Decimal(p.json.balance).eq(row!.balance), `account ${id}: redis balance ${p.json.balance} = ledger ${new Decimal(row!.balance).toString()}`);
    }
    const seconds = run.ms / 1000;
    return [
      `### Funding over ${HOLDERS.toLocaleString('en-US')} holders (fixed count)`,
      '',
      table(
        ['measure', 'result', 'target', 'met'],
        [
          [`POST /funding, ${HOLDERS.toLocaleString('en-US')} holders charged (one round trip)`, `${seconds.toFixed(2)} s (${(HOLDERS / seconds).toFixed(0)} holders/s)`, `≤ ${TARGET_S} s`, seconds <= TARGET_S ? 'yes' : '**no**'],
          ['engine CPU time during the POST (user + system)', `${cpu.toFixed(1)} s (${((cpu * 1e6) / HOLDERS).toFixed(0)} µs per holder)`, '-', '-'],
          ['engine RSS before / peak during / after', `${rssBefore.toFixed(0)} / ${peak.toFixed(0)} / ${rssAfter.toFixed(0)} MiB`, '-', '-'],
          ['the same request again (answered from the recorded event)', `${repeat.ms.toFixed(1)} ms`, '-', '-'],
          ['seeding in PostgreSQL / rebuilding Redis from it (set-up, not measured work)', `${seedS.toFixed(1)} s / ${rebuildS.toFixed(1)} s`, '-', '-'],
        ],
      ),
      '',
      'Checks:',
      ...checks,
      '',
      `Holders: ${HOLDERS / 2} long, ${HOLDERS / 2} short, 0.001–1 BTC at ${MARK}, 20,000 USDT each; rate ${RATE}, nobody endangered. ` +
        'The engine starts with an empty account cache (every holder is read from Redis). Loopback; engine, Redis, PostgreSQL and the bench on this host; ' +
        `1-minute load average when the POST was sent: ${loadBefore.toFixed(1)} (${cpus().length} cores).`,
    ].join('\n');
  } finally {
    if (engine) await engine.stop();
    await sql.end();
    await cleanup(iso);
  }
}
