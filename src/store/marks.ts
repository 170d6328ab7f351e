import type { Sql } from './postgres.js';

/** Records the latest mark for a symbol; returns its version (1 on first post, +1 on every later one). */
export async function upsertMark(sql: Sql, symbol: string, price: string): Promise<number> {
  const [row] = await sql<{ version: string }[]>`
    INSERT INTO mark_prices (symbol, price) VALUES (${symbol}, ${price})
    ON CONFLICT (symbol) DO UPDATE
      SET price = EXCLUDED.price, version = mark_prices.version + 1, updated_at = now()
    RETURNING version`;
  return Number(row!.version);
}
