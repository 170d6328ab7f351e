/** `npm run rebuild`: rebuilds Redis's state from the PostgreSQL ledger, now, and exits. */
import { pino } from 'pino';
import { ConfigError, loadConfig } from '../config.js';
import { createEngine } from '../engine.js';
import { BOOT_FIELD } from '../store/marks-hash.js';
import { terminalProgress } from './progress.js';

try {
  const config = loadConfig(process.env);
  const engine = await createEngine(config, pino({ level: config.logLevel }), { recover: false });
  try {
    // Take the shared rebuild lock like a running engine would, then rebuild unconditionally.
    engine.recovery.onRebuildProgress = terminalProgress('rebuild');
    await Promise.all(engine.keys.shards.map((k) => engine.redis.hdel(k.marks, BOOT_FIELD)));
    const stats = await engine.recovery.rebuildOrWait();
    process.stdout.write(`${JSON.stringify(stats ?? 'another engine rebuilt it')}\n`);
  } finally {
    await engine.close();
  }
} catch (error) {
  process.stderr.write(`${error instanceof ConfigError ? error.message : `rebuild failed: ${(error as Error).message}`}\n`);
  process.exit(1);
}
