/**
 * The cost of a read right after a tick, with no other market and with 5,000
 * other markets listed (each with a mark, so every one is in the mark book).
 *
 * Two engine processes, each on its own schema and key prefix: one with
 * BTC-PERP alone, one with BTC-PERP and 5,000 other markets (listed by
 * POST /mark-price as admin, 32 in flight). Each holds one account with a
 * BTC-PERP position. An iteration posts a BTC-PERP mark (as an `operator`
 * key), then reads that account's positions (as a `reader` key): the read
 * after a tick. The marks alternate between two prices within the trade
 * price band, so every tick moves the mark and liquidates nobody. The two
 * engines take turns iteration by iteration (A B, then B A, ...), so both
 * cases see the same moments of this shared machine. Each read must show
 * the mark just posted.
 *
 * Figures: median and p99 of the tick alone, of the read after it, and of
 * the two together (the tick's send to the read's last byte), over
 * ITERATIONS iterations per case after WARMUP not counted. Loopback only.
 */
import { type Child, cleanup, createKey, isolation, percentile, pool, post, request, startEngine, table, type Isolation } from './harness.js';

const SYMBOL = 'BTC-PERP';
const OTHER_MARKETS = 5_000;
const LISTING_CONCURRENCY = 32;
/** Two marks 0.5 % apart: inside the 5 % trade price band, far from endangering the account. */
const PRICES = ['50000', '50250'] as const;
const ACCOUNT = 1;
const WARMUP = 30;
const ITERATIONS = 300;

interface Case {
  readonly label: string;
  readonly others: number;
  readonly iso: Isolation;
  readonly engine: Child;
  readonly operatorKey: string;
  readonly readerKey: string;
  readonly listingSeconds: number | null;
  readonly listingRetries: number;
  readonly tick: number[];
  readonly read: number[];
  readonly both: number[];
}

const ms = (x: number) => (x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0));
const log = (line: string) => process.stderr.write(`[bench markets] ${line}\n`);

async function prepare(label: string, others: number): Promise<Case> {
  const iso = isolation();
  const engine = await startEngine(iso).catch(async (error: unknown) => {
    await cleanup(iso);
    throw error;
  });
  try {
    const operatorKey = await createKey(engine.base, 'operator', 'bench markets ticks');
    const readerKey = await createKey(engine.base, 'reader', 'bench markets reads');
    await post(engine.base, '/mark-price', { symbol: SYMBOL, price: PRICES[0] }); // lists BTC-PERP
    await post(engine.base, `/accounts/${ACCOUNT}/deposit`, { amount: '1000000' });
    const trade = await post(engine.base, '/trade', { account_id: ACCOUNT, symbol: SYMBOL, side: 'BUY', quantity: '0.5', price: PRICES[0] });
    if (trade?.success !== true) throw new Error(`seed trade not booked: ${JSON.stringify(trade)}`);
    let listingSeconds: number | null = null;
    let listingRetries = 0;
    if (others > 0) {
      const symbols = Array.from({ length: others }, (_, i) => `OTHER${String(i + 1).padStart(5, '0')}-PERP`);
      const start = performance.now();
      // Setup, not a measure: a 503 (a dependency past DEPENDENCY_TIMEOUT_MS on a busy machine;
      // nothing was changed) is retried after a pause, a few times, and counted.
      await pool(symbols, LISTING_CONCURRENCY, async (symbol) => {
        for (let attempt = 1; ; attempt++) {
          const r = await request(engine.base, 'POST', '/mark-price', { symbol, price: '100' });
          if (r.status === 200) return;
          if (r.status !== 503 || attempt >= 5) throw new Error(`listing ${symbol} → ${r.status} ${JSON.stringify(r.json).slice(0, 300)}`);
          listingRetries++;
          await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
        }
      });
      listingSeconds = (performance.now() - start) / 1000;
      if (listingRetries > 0) log(`${label}: ${listingRetries} listing posts answered 503 and were retried`);
      // Every one listed with its mark: the last one read back. (Not GET /markets: unpaged, it reads
      // Redis once per market and can pass DEPENDENCY_TIMEOUT_MS at 5,000 markets, answering 503.)
      const last = await request(engine.base, 'GET', `/markets/${symbols[symbols.length - 1]}`);
      if (last.status !== 200 || Number(last.json?.mark_price) !== 100) throw new Error(`${label}: GET /markets/${symbols[symbols.length - 1]} → ${last.status} ${JSON.stringify(last.json).slice(0, 300)}`);
      log(`${label}: listed ${others} markets in ${listingSeconds.toFixed(1)} s`);
    }
    return { label, others, iso, engine, operatorKey, readerKey, listingSeconds, listingRetries, tick: [], read: [], both: [] };
  } catch (error) {
    await engine.stop();
    await cleanup(iso);
    throw error;
  }
}

/** One tick then one read; records the three timings when `record`. */
async function iteration(c: Case, i: number, record: boolean): Promise<void> {
  const price = PRICES[(i + 1) % 2]!; // the mark starts at PRICES[0]; so every tick, the first included, moves it
  const start = performance.now();
  const tick = await request(c.engine.base, 'POST', '/mark-price', { symbol: SYMBOL, price }, 30_000, c.operatorKey);
  const read = await request(c.engine.base, 'GET', `/positions/${ACCOUNT}`, undefined, 30_000, c.readerKey);
  const both = performance.now() - start;
  if (tick.status !== 200 || tick.json?.sweep !== 'complete' || tick.json?.liquidated?.length !== 0) {
    throw new Error(`${c.label}: tick ${i} → ${tick.status} ${JSON.stringify(tick.json).slice(0, 300)}`);
  }
  if (read.status !== 200) throw new Error(`${c.label}: read ${i} → ${read.status} ${JSON.stringify(read.json).slice(0, 300)}`);
  const position = (read.json.positions as { symbol: string; mark_price: string | null }[]).find((p) => p.symbol === SYMBOL);
  if (position?.mark_price == null || Number(position.mark_price) !== Number(price)) {
    throw new Error(`${c.label}: read ${i} after a tick to ${price} shows mark ${position?.mark_price}`);
  }
  if (record) {
    c.tick.push(tick.ms);
    c.read.push(read.ms);
    c.both.push(both);
  }
}

export async function benchMarkets(): Promise<string> {
  const cases: Case[] = [];
  try {
    cases.push(await prepare('no other market', 0));
    log(`listing ${OTHER_MARKETS} other markets, ${LISTING_CONCURRENCY} in flight`);
    cases.push(await prepare(`${OTHER_MARKETS.toLocaleString('en-US')} other markets`, OTHER_MARKETS));
    log(`${WARMUP} warm-up + ${ITERATIONS} iterations per case, the cases in turns`);
    for (let i = 0; i < WARMUP + ITERATIONS; i++) {
      const order = i % 2 === 0 ? cases : [...cases].reverse();
      for (const c of order) await iteration(c, i, i >= WARMUP);
    }
    const rows = cases.map((c) => [
      c.label,
      `${ms(percentile(c.tick, 50))} / ${ms(percentile(c.tick, 99))}`,
      `${ms(percentile(c.read, 50))} / ${ms(percentile(c.read, 99))}`,
      `${ms(percentile(c.both, 50))} / ${ms(percentile(c.both, 99))}`,
      c.listingSeconds === null
        ? '-'
        : `${c.listingSeconds.toFixed(1)} s (${(c.others / c.listingSeconds).toFixed(0)}/s${c.listingRetries > 0 ? `, ${c.listingRetries} retried after 503` : ''})`,
      c.engine.rssMiB().toFixed(0),
    ]);
    const [none, many] = cases as [Case, Case];
    const ratio = (f: (c: Case) => number[]) => (percentile(f(many), 50) / percentile(f(none), 50)).toFixed(2);
    return [
      `### Read after a tick, with no other market and with ${OTHER_MARKETS.toLocaleString('en-US')} other markets (${ITERATIONS} iterations per case; --seconds does not apply)`,
      '',
      table(
        ['case', 'POST /mark-price alone, p50 / p99 ms', `GET /positions/${ACCOUNT} after it, p50 / p99 ms`, 'tick + read, p50 / p99 ms', 'listing the other markets', 'engine RSS MiB'],
        rows,
      ),
      '',
      `${OTHER_MARKETS.toLocaleString('en-US')} other markets / none, median: tick + read ${ratio((c) => c.both)}, read after the tick ${ratio((c) => c.read)}, tick ${ratio((c) => c.tick)} (an earlier probe: read after a tick 4.3 → 23.7 ms median with 5,000 junk symbols)`,
      `Each iteration: POST /mark-price ${SYMBOL} (operator key; marks ${PRICES.join(' and ')} in turn), then GET /positions/${ACCOUNT} (reader key) for an account holding 0.5 ${SYMBOL}, which must show the new mark; ${WARMUP} warm-up iterations not counted; the two engines (separate processes, schemas and key prefixes) in turns. Wall time per round trip from the bench process (node:http, keep-alive), loopback.`,
    ].join('\n');
  } finally {
    for (const c of cases) {
      await c.engine.stop();
      await cleanup(c.iso);
    }
  }
}
