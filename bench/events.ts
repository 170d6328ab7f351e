/**
 * `npm run bench -- events`: GET /events under the trade load. The engine
 * books trades at 64 connections (as in the trades benchmark) while a
 * consumer reads /events?types=trade; for every trade event it measures
 * from the trade's commit to its arrival. The trade's `created_at` is when
 * its commit's transaction started (PostgreSQL's clock, this host's), so each
 * figure is an upper bound of commit-to-delivery. A second run adds a
 * consumer that never reads from its socket, to show it neither slows the
 * engine nor grows its memory.
 */
import http from 'node:http';
import { connect } from 'node:net';
import { BENCH_ADMIN_KEY, bearer, cleanup, isolation, load, percentile, startEngine, table, type Child } from './harness.js';
import { ACCOUNTS, seedTradeAccounts, tradeBodies } from './trades.js';

interface Consumer {
  readonly latenciesMs: number[];
  close(): void;
}

/** Reads trade events and records each one's commit-to-arrival time. */
function consume(base: string): Promise<Consumer> {
  const latenciesMs: number[] = [];
  return new Promise((resolve, reject) => {
    const req = http.get(`${base}/events?types=trade`, { headers: { authorization: bearer(BENCH_ADMIN_KEY) } }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`GET /events answered ${res.statusCode}`));
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        const now = Date.now();
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const at = block.indexOf('"created_at":"');
          if (at >= 0) latenciesMs.push(now - Date.parse(block.slice(at + 14, block.indexOf('"', at + 14))));
        }
      });
      res.on('error', () => undefined);
      resolve({ latenciesMs, close: () => req.destroy() });
    });
    req.on('error', reject);
  });
}

/** A client that asks for the stream and never reads its socket. */
function stall(base: string): () => void {
  const socket = connect(Number(new URL(base).port), '127.0.0.1');
  socket.on('error', () => undefined);
  socket.write(`GET /events HTTP/1.1\r\nhost: bench\r\nauthorization: ${bearer(BENCH_ADMIN_KEY)}\r\n\r\n`);
  socket.pause();
  return () => socket.destroy();
}

export async function benchEvents(seconds: number): Promise<string> {
  const iso = isolation();
  let engine: Child | null = null;
  try {
    // A stalled consumer is dropped after 2 s instead of the default 10 s, so the run sees it happen.
    engine = await startEngine(iso, { EVENTS_STALL_MS: '2000' });
    await seedTradeAccounts(engine.base);
    await load(engine.base, 64, 2, tradeBodies(ACCOUNTS)); // warm-up
    const rows: (string | number)[][] = [];

    const plain = await load(engine.base, 64, seconds, tradeBodies(ACCOUNTS));
    rows.push(['no consumer', plain.rps.toFixed(0), plain.p99, '', '', '', '', engine.rssMiB().toFixed(0)]);

    for (const label of ['one consumer', 'one consumer + one that never reads']) {
      const consumer = await consume(engine.base);
      const stop = label.includes('never') ? stall(engine.base) : () => undefined;
      const r = await load(engine.base, 64, seconds, tradeBodies(ACCOUNTS));
      // Let the last events arrive before counting.
      await new Promise((res) => setTimeout(res, 500));
      consumer.close();
      stop();
      const l = consumer.latenciesMs;
      rows.push([label, r.rps.toFixed(0), r.p99, l.length, percentile(l, 50), percentile(l, 99), Math.max(...l), engine.rssMiB().toFixed(0)]);
    }
    return [
      `### GET /events under the trade load (64 connections, ${seconds} s per row)`,
      '',
      table(['run', 'trades/s', 'trade p99 ms', 'events received', 'delivery p50 ms', 'delivery p99 ms', 'max ms', 'engine RSS MiB'], rows),
      '',
      'delivery: from the trade commit transaction\'s start (its created_at) to the event\'s arrival at the consumer (target p99 ≤ 100 ms)',
    ].join('\n');
  } finally {
    await engine?.stop();
    await cleanup(iso);
  }
}
