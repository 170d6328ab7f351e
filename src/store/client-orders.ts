/**
 * The client order ids an account has booked (hash `coid` under the
 * account's hash tag): each id's stored first result, so a repeat is answered
 * without touching PostgreSQL. The ledger's unique index is what makes an id
 * idempotent; this hash only answers repeats (see KeySpace's retention).
 * The apply script writes it with the trade that books an id.
 */
import type { KeySpace, RedisClient } from './redis.js';

/** Records a booked client order's stored result, unless Redis already has one for that id. */
export async function rememberClientOrder(redis: RedisClient, keys: KeySpace, accountId: number, clientOrderId: string, stored: string): Promise<void> {
  const hash = keys.account(accountId).clientOrders;
  // Both in one round trip (a pipeline keeps their order).
  const pipeline = redis.pipeline().hsetnx(hash, clientOrderId, stored);
  if (keys.clientOrderTtlMs > 0) pipeline.pexpire(hash, keys.clientOrderTtlMs);
  for (const [error] of (await pipeline.exec()) ?? []) if (error) throw error;
}
