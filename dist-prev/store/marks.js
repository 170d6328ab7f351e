/**
 * Records the latest mark for a symbol; returns its version (1 on first
 * post, +1 on every later one).
 *
 * The commit does not wait for the WAL flush (synchronous_commit off, for
 * this transaction only): a tick is acknowledged in a fraction of a
 * millisecond instead of an fsync, and PostgreSQL flushes it within
 * wal_writer_delay (200 ms by default). Only a crash of PostgreSQL's host in
 * that window can lose the newest mark (the operator's next tick replaces it
 * anyway); everything a tick liquidates is committed durably, with the mark
 * that triggered it, before the tick is answered.
 */
export async function upsertMark(sql, symbol, price) {
    const [, rows] = await sql.begin((tx) => [
        tx `SET LOCAL synchronous_commit = off`,
        tx `
      INSERT INTO mark_prices (symbol, price) VALUES (${symbol}, ${price})
      ON CONFLICT (symbol) DO UPDATE
        SET price = EXCLUDED.price, version = mark_prices.version + 1, updated_at = now()
      RETURNING version`,
    ]);
    return Number(rows[0].version);
}
//# sourceMappingURL=marks.js.map