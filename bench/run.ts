/**
 * `npm run bench [-- trades|liquidation|liquidation-tiered|markets|events|metrics|funding] [-- --seconds N]`: runs the benchmarks against the
 * built engine on local Redis and PostgreSQL (loopback only) and prints tables.
 */
import { benchEvents } from './events.js';
import { benchFunding } from './funding.js';
import { benchLiquidation } from './liquidation.js';
import { benchMarkets } from './markets.js';
import { benchMetrics } from './metrics.js';
import { benchTrades } from './trades.js';

const args = process.argv.slice(2);
const secondsArg = args.indexOf('--seconds');
const seconds = secondsArg >= 0 ? Number(args[secondsArg + 1]) : 10;
const wanted = args.filter((a, i) => !a.startsWith('--') && args[i - 1] !== '--seconds');
const all: Record<string, (s: number) => Promise<string>> = {
  trades: benchTrades,
  liquidation: (s) => benchLiquidation(s, false),
  'liquidation-tiered': (s) => benchLiquidation(s, true),
  markets: benchMarkets,
  events: benchEvents,
  metrics: benchMetrics,
  funding: () => benchFunding(),
};

for (const name of wanted.length ? wanted : Object.keys(all)) {
  const run = all[name];
  if (!run) throw new Error(`unknown benchmark ${name}; have ${Object.keys(all).join(', ')}`);
  process.stdout.write(`${await run(seconds)}\n\n`);
}
