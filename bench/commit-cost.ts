/**
 * Development aid, not part of `npm run bench`: what one group commit costs
 * this process, by batch size. Submits batches of 1, 16 and 64 one-row items
 * (each batch in one event-loop turn, so it is one commit) through the
 * engine's GroupCommitter on a scratch schema of the local PostgreSQL, one
 * commit at a time, and prints this process's CPU (user + system) and the
 * wall time per commit. The fixed part is what smaller, earlier commits
 * (COMMIT_EARLY_ROWS) pay more often.
 *
 *   npx tsx bench/commit-cost.ts [commits per size=1000]
 */
import { DATABASE_URL } from './harness.js';
import { isPostgresUnavailable } from '../src/services/dependencies.js';
import { GroupCommitter, type LedgerRow } from '../src/store/ledger.js';
import { migrate } from '../src/store/migrate.js';
import { createSql } from '../src/store/postgres.js';

const commits = Number.parseInt(process.argv[2] ?? '1000', 10);
const schema = `bench_commit_${process.pid}`;
const sql = createSql({ url: DATABASE_URL, schema, poolSize: 2, connectTimeoutSeconds: 5 });
try {
  await migrate(sql, schema);
  const committer = new GroupCommitter(sql, { maxRows: 512, maxConcurrent: 1, earlyRows: 0, flushTimeoutMs: 5000, isConnectionError: isPostgresUnavailable });
  let account = 0;
  // A trade row as the engine writes one (the numbers are only text here).
  const row = (): LedgerRow => ({
    accountId: ++account,
    seq: 1,
    kind: 'TRADE',
    symbol: 'BTC-PERP',
    side: 'BUY',
    quantity: '0.05',
    price: '50010',
    realisedPnl: '0',
    clientOrderId: null,
    liquidationId: null,
    positionQuantity: '1.25',
    positionEntryPrice: '50001.123456789',
    equity: '1000000123.45',
    balance: '1000000000',
  });
  console.log('| rows per commit | CPU µs per commit | CPU µs per row | wall µs per commit |\n|---|---|---|---|');
  for (const size of [1, 16, 64]) {
    for (let i = 0; i < 200; i++) await Promise.all(Array.from({ length: size }, () => committer.submit([row()]))); // warm-up
    const cpu = process.cpuUsage();
    const start = performance.now();
    for (let i = 0; i < commits; i++) await Promise.all(Array.from({ length: size }, () => committer.submit([row()])));
    const used = process.cpuUsage(cpu);
    const us = (used.user + used.system) / commits;
    console.log(`| ${size} | ${us.toFixed(0)} | ${(us / size).toFixed(1)} | ${(((performance.now() - start) * 1000) / commits).toFixed(0)} |`);
  }
  await committer.close();
} finally {
  await sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`;
  await sql.end();
}
