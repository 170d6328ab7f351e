// The storage floor the trades benchmark (bench/trades.ts) runs beside the
// echo and the engine: a bare fastify route (like
// bench/echo-server.mjs) that does only the durable I/O a booked trade needs,
// with the engine's drivers and the engine's table, and none of its logic.
//
// Per request: JSON.parse, a ledger row (the body's strings; the computed
// columns are fixed placeholders) into a group commit shaped like the
// engine's (one multi-row INSERT … SELECT FROM unnest, up to 6 in flight, an
// early commit at 32 queued rows), the answer at the commit, then the new
// state into Redis in one EVALSHA per batch (HSET of seq, balance and
// position, one ZADD into a risk index, INCR of a revision). No zod, no
// decimal math, no account gate, no error handling: nothing a real engine
// could do without. Whatever rate this reaches bounds any engine that books
// trades durably through these drivers on this machine.
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import postgres from 'postgres';
import { migrate } from '../dist/store/migrate.js';

const schema = process.env.DATABASE_SCHEMA;
const prefix = process.env.REDIS_KEY_PREFIX;
if (!schema || !prefix) throw new Error('DATABASE_SCHEMA and REDIS_KEY_PREFIX are required');
const sql = postgres(process.env.DATABASE_URL, { max: 10, onnotice: () => {}, connection: { search_path: schema } });
await migrate(sql, schema);
const redis = new Redis(process.env.REDIS_URL, { enableAutoPipelining: false });

const APPLY = `
for i = 1, #ARGV, 6 do
  local k = KEYS[1] .. ':' .. ARGV[i]
  redis.call('HSET', k, 'seq', ARGV[i + 1], 'bal', ARGV[i + 2], 'q:' .. ARGV[i + 3], ARGV[i + 4], 'e:' .. ARGV[i + 3], ARGV[i + 5])
  redis.call('ZADD', KEYS[1] .. ':idx:' .. ARGV[i + 3], ARGV[i + 1], ARGV[i])
end
return redis.call('INCR', KEYS[1] .. ':rev')
`;
const sha = await redis.script('LOAD', APPLY);

const seqs = new Map();
const queue = [];
let inFlight = 0;
let scheduled = false;
const MAX_IN_FLIGHT = 6;
const EARLY_ROWS = 32;

function submit(row) {
  return new Promise((resolve, reject) => {
    queue.push({ row, resolve, reject });
    if (queue.length >= EARLY_ROWS && inFlight < MAX_IN_FLIGHT) pump();
    else if (!scheduled) {
      scheduled = true;
      setImmediate(() => {
        scheduled = false;
        pump();
      });
    }
  });
}

function pump() {
  while (queue.length > 0 && inFlight < MAX_IN_FLIGHT) {
    const batch = queue.splice(0, 512);
    inFlight++;
    commit(batch).finally(() => {
      inFlight--;
      if (queue.length > 0) pump();
    });
  }
}

async function commit(batch) {
  const rows = batch.map((b) => b.row);
  const col = (f) => rows.map(f);
  try {
    const result = await sql`
      INSERT INTO ledger (account_id, seq, kind, symbol, side, quantity, price, realised_pnl, client_order_id,
                          liquidation_id, position_quantity, position_entry_price, equity, amount, balance)
      SELECT * FROM unnest(
        ${col((r) => r.accountId)}::bigint[], ${col((r) => r.seq)}::bigint[], ${col(() => 'TRADE')}::text[],
        ${col((r) => r.symbol)}::text[], ${col((r) => r.side)}::text[],
        ${col((r) => r.quantity)}::numeric[], ${col((r) => r.price)}::numeric[],
        ${col(() => '0')}::numeric[], ${col(() => null)}::text[],
        ${col(() => null)}::bigint[], ${col((r) => r.quantity)}::numeric[],
        ${col((r) => r.price)}::numeric[], ${col(() => '1000000000')}::numeric[],
        ${col(() => null)}::numeric[], ${col(() => '1000000000')}::numeric[])
      RETURNING account_id, seq, entry_id, created_at`;
    batch.forEach((b, i) => b.resolve(result[i]));
  } catch (error) {
    for (const b of batch) b.reject(error);
    return;
  }
  const args = [];
  for (const r of rows) args.push(r.accountId, r.seq, '1000000000', r.symbol, r.quantity, r.price);
  await redis.evalsha(sha, 1, prefix, ...args);
}

const app = Fastify({ logger: false });
app.post('/trade', async (req) => {
  const b = req.body;
  const seq = (seqs.get(b.account_id) ?? 0) + 1;
  seqs.set(b.account_id, seq);
  const c = await submit({ accountId: b.account_id, seq, symbol: b.symbol, side: b.side, quantity: b.quantity, price: b.price });
  return { trade_id: c.entry_id, account_id: b.account_id, seq, symbol: b.symbol, side: b.side, quantity: b.quantity, price: b.price, created_at: c.created_at };
});
app.get('/health', async () => ({ status: 'ok' }));
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0) });
process.on('SIGTERM', () =>
  app
    .close()
    .then(() => sql.end())
    .then(() => redis.quit())
    .then(() => process.exit(0)),
);
