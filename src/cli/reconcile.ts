/**
 * `npm run reconcile`: compares Redis with what the PostgreSQL ledger implies
 * and lists every difference; exits 1 when there is any, 0 when they agree.
 */
import { pino } from 'pino';
import { ConfigError, loadConfig } from '../config.js';
import { createEngine } from '../engine.js';
import { reconcile } from '../services/reconcile.js';
import { terminalProgress } from './progress.js';

let code = 0;
try {
  const config = loadConfig(process.env);
  const engine = await createEngine(config, pino({ level: 'warn' }), { recover: false });
  try {
    const diffs = await reconcile({ ...engine, onProgress: terminalProgress('reconcile') });
    for (const d of diffs) process.stdout.write(`${d}\n`);
    process.stdout.write(diffs.length === 0 ? 'redis agrees with the ledger\n' : `${diffs.length} difference(s)\n`);
    code = diffs.length === 0 ? 0 : 1;
  } finally {
    await engine.close();
  }
} catch (error) {
  process.stderr.write(`${error instanceof ConfigError ? error.message : `reconcile failed: ${(error as Error).message}`}\n`);
  code = 2;
}
process.exit(code);
