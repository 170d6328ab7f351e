/**
 * An account's lease lock (keys `lock`, `lockwait`, `contended` under the
 * account's hash tag): how writers in different engine processes take turns
 * on one account when they would otherwise collide.
 */
import { parseAccount, type StoredAccount } from './account-state.js';
import type { KeySpace, RedisClient } from './redis.js';
import { runScript, SCRIPTS } from './scripts.js';

export interface AcquireRequest {
  readonly accountId: number;
  /** The lease's token: only its holder releases it. */
  readonly token: string;
  readonly ttlMs: number;
  /** This process's id: a process that failed to get the lock is next in line for it. */
  readonly waiterId: string;
  /** A client order id whose stored result is read with the account (null: none). */
  readonly clientOrderId: string | null;
}

export type Acquired =
  | { readonly acquired: false }
  | { readonly acquired: true; readonly account: StoredAccount; readonly clientOrder: string | null };

/** One command: takes the lock if it is free and, if so, reads the account and the client order's stored result. */
export async function acquireAccount(redis: RedisClient, keys: KeySpace, r: AcquireRequest): Promise<Acquired> {
  const k = keys.account(r.accountId);
  const reply = (await runScript(redis, SCRIPTS.accountAcquire, [k.lock, k.lockWaiter, k.state, k.clientOrders, r.token, r.ttlMs, r.waiterId, r.clientOrderId ?? ''])) as [
    number,
    string[]?,
    (string | null)?,
  ];
  if (reply[0] !== 1) return { acquired: false };
  return { acquired: true, account: parseAccount(r.accountId, reply[1] ?? []), clientOrder: reply[2] ?? null };
}

/** Releases the lock if `token` still holds it. */
export async function releaseAccount(redis: RedisClient, keys: KeySpace, accountId: number, token: string): Promise<void> {
  await runScript(redis, SCRIPTS.accountRelease, [keys.account(accountId).lock, token]);
}

/** After a collision: for `ms`, writers of this account take its lock instead of the optimistic path. */
export async function markContended(redis: RedisClient, keys: KeySpace, accountId: number, ms: number): Promise<void> {
  await redis.set(keys.account(accountId).contended, '1', 'PX', ms);
}
