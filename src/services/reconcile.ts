/**
 * reconcile(): every difference between Redis and what the PostgreSQL ledger
 * implies, and every inconsistency of the insurance fund (`npm run reconcile`,
 * and the tests after crashes and outages).
 * Reads only; a difference is repaired by a rebuild (see recovery.ts).
 */
import { D, str } from '../domain/decimal.js';
import type { Position } from '../domain/margin.js';
import { parseAccount } from '../store/account-state.js';
import { BOOT_FIELD, isMarkField, marketField, marketSymbolOf, marketVersionField } from '../store/marks-hash.js';
import { fundDifferences } from '../store/insurance.js';
import type { MarketDefinition } from '../store/markets.js';
import type { Sql } from '../store/postgres.js';
import type { KeySpace, RedisClient } from '../store/redis.js';
import { member, RiskKeys } from '../store/risk-index.js';
import { expectedState } from './ledger-state.js';

/** An engine has these (reconcile(engine) works). */
export interface ReconcileDeps {
  readonly redis: RedisClient;
  readonly sql: Sql;
  readonly keys: KeySpace;
  /** Told how many accounts have been compared, of how many (`npm run reconcile` shows it on a terminal). */
  readonly onProgress?: (done: number, total: number) => void;
}

const CHUNK = 1000;

/** Every difference between Redis and what the ledger implies (empty: they agree). */
export async function reconcile({ redis, sql, keys, onProgress }: ReconcileDeps): Promise<string[]> {
  const risk = new RiskKeys(keys);
  const expected = await expectedState(sql);
  const diffs: string[] = [];
  // Every shard holds a copy of the marks: each is compared with PostgreSQL.
  for (const shard of keys.shards) {
    const where = keys.shards.length === 1 ? '' : ` (shard ${shard.shard})`;
    const marksHash = await redis.hgetall(shard.marks);
    if (marksHash[BOOT_FIELD] === undefined) diffs.push(`redis has no boot marker${where} (state lost or never built)`);
    diffs.push(...marksDifferences(marksHash, expected).map((d) => d + where));
  }
  diffs.push(...(await fundDifferences(sql)));
  const unswept = await sql<{ symbol: string }[]>`SELECT symbol FROM mark_prices WHERE swept_version < version`;
  for (const { symbol } of unswept) diffs.push(`mark ${symbol}: committed but its liquidation sweep has not finished`);
  const perShard = await Promise.all(keys.shards.map((k) => redis.smembers(k.accounts)));
  perShard.forEach((members, k) => {
    for (const m of members) if (keys.shardOf(Number(m)) !== k) diffs.push(`account ${m}: in shard ${k}'s account set, not its own`);
  });
  const inRedis = new Set(perShard.flat().map(Number));
  for (const id of inRedis) if (!expected.accounts.has(id)) diffs.push(`account ${id}: in redis only`);
  const ids = [...expected.accounts.keys()];
  for (let i = 0; i < ids.length; i += CHUNK) {
    const chunk = ids.slice(i, i + CHUNK);
    const [states, orders] = await Promise.all([
      Promise.all(chunk.map((id) => redis.hgetall(keys.account(id).state))),
      Promise.all(chunk.map((id) => redis.hgetall(keys.account(id).clientOrders))),
    ]);
    for (const [j, id] of chunk.entries()) {
      const want = expected.accounts.get(id)!;
      if (!inRedis.has(id)) diffs.push(`account ${id}: missing from the account set`);
      const got = parseAccount(id, states[j]!);
      if (got.seq !== want.seq) diffs.push(`account ${id}: seq redis ${got.seq}, ledger ${want.seq}`);
      if (!got.balance.eq(want.balance)) diffs.push(`account ${id}: balance redis ${str(got.balance)}, ledger ${str(want.balance)}`);
      for (const symbol of new Set([...got.positions.keys(), ...want.positions.keys()])) {
        const g = got.positions.get(symbol);
        const w = want.positions.get(symbol);
        const show = (p?: Position) => (p ? `${str(p.quantity)} @ ${str(p.entryPrice)}` : 'none');
        if (!g || !w || !g.quantity.eq(w.quantity) || !g.entryPrice.eq(w.entryPrice)) {
          diffs.push(`account ${id} ${symbol}: position redis ${show(g)}, ledger ${show(w)}`);
        }
        if (w) {
          const key = w.quantity.isPos() ? risk.of(id).long(symbol) : risk.of(id).short(symbol);
          if ((await redis.zscore(key, member(id))) === null) diffs.push(`account ${id} ${symbol}: missing from the risk index`);
        }
      }
      // Redis's client order results are a cache of the ledger's answers:
      // each one it holds must be the ledger's; with a retention limit, one
      // it no longer holds is not a difference.
      for (const [coid, stored] of Object.entries(orders[j]!)) {
        const booked = want.clientOrders.get(coid);
        if (booked !== stored) diffs.push(`account ${id}: client order ${coid} ${booked === undefined ? 'not in the ledger' : 'differs'}`);
      }
      if (keys.clientOrderTtlMs === 0) {
        for (const coid of want.clientOrders.keys()) {
          if (orders[j]![coid] === undefined) diffs.push(`account ${id}: client order ${coid} missing`);
        }
      }
    }
    onProgress?.(Math.min(i + CHUNK, ids.length), ids.length);
  }
  return diffs;
}

/** How one copy of the marks hash differs from the marks and markets PostgreSQL holds. */
function marksDifferences(marksHash: Record<string, string>, expected: { marks: ReadonlyMap<string, { price: string }>; markets: readonly MarketDefinition[] }): string[] {
  const out: string[] = [];
  for (const [symbol, m] of expected.marks) {
    if (marksHash[symbol] === undefined || !new D(marksHash[symbol]).eq(m.price)) {
      out.push(`mark ${symbol}: redis ${marksHash[symbol] ?? 'missing'}, ledger ${m.price}`);
    }
  }
  for (const field of Object.keys(marksHash)) {
    if (isMarkField(field) && !expected.marks.has(field)) out.push(`mark ${field}: in redis only`);
  }
  for (const m of expected.markets) {
    if (marksHash[marketField(m.symbol)] !== m.json || marksHash[marketVersionField(m.symbol)] !== String(m.version)) {
      out.push(`market ${m.symbol}: redis ${marksHash[marketVersionField(m.symbol)] ?? 'missing'}, postgresql version ${m.version}`);
    }
  }
  const listed = new Set(expected.markets.map((m) => m.symbol));
  for (const field of Object.keys(marksHash)) {
    const symbol = marketSymbolOf(field);
    if (symbol !== null && !listed.has(symbol)) out.push(`market ${symbol}: in redis only`);
  }
  return out;
}
