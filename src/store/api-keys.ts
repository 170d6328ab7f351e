/**
 * API keys in PostgreSQL: only a SHA-256 of each key is stored. A key is
 * `<key_id>.<secret>`: the id is public (it names the key in lists and in
 * the audit trail), the secret is 32 random bytes.
 */
import { hash, randomBytes } from 'node:crypto';
import type { Sql } from './postgres.js';

export const ROLES = ['admin', 'operator', 'treasury', 'trading', 'reader', 'account'] as const;
export type Role = (typeof ROLES)[number];

export interface KeyRow {
  key_id: string;
  name: string;
  role: Role;
  account_ids: string[];
  key_hash: Buffer;
  created_at: Date;
  created_by: string | null;
  revoked_at: Date | null;
  revoked_by: string | null;
  version: string;
}

/** SHA-256 of a key (the one-shot `hash` costs less than a Hash object per request). */
export const hashKey = (key: string): Buffer => hash('sha256', key, 'buffer');

/** A new key: its id and the secret text (shown once). */
export function newKey(): { keyId: string; key: string } {
  const keyId = `key_${randomBytes(6).toString('hex')}`;
  return { keyId, key: `${keyId}.${randomBytes(32).toString('base64url')}` };
}

export async function insertKey(
  sql: Sql,
  input: { name: string; role: Role; accountIds: readonly number[]; createdBy: string | null },
): Promise<{ row: KeyRow; key: string }> {
  const { keyId, key } = newKey();
  const [row] = await sql<KeyRow[]>`
    INSERT INTO api_keys (key_id, name, role, account_ids, key_hash, created_by)
    VALUES (${keyId}, ${input.name}, ${input.role}, ${input.accountIds.map(String)}::bigint[], ${hashKey(key)}, ${input.createdBy})
    RETURNING *`;
  return { row: row!, key };
}

/**
 * Keys changed (created or revoked) after `version`, oldest change first,
 * and every key created or revoked in the last RECENT_S seconds: versions
 * come from a sequence, and a change may commit after one with a higher
 * version, so a reader that went past it by version alone would never see
 * it. Re-reading the recent ones covers any commit that lags by less.
 */
export async function keysChangedSince(sql: Sql, version: number): Promise<KeyRow[]> {
  return sql<KeyRow[]>`
    SELECT * FROM api_keys
    WHERE version > ${version}
       OR created_at > now() - make_interval(secs => ${RECENT_S})
       OR revoked_at > now() - make_interval(secs => ${RECENT_S})
    ORDER BY version`;
}

/** How far back every poll re-reads changes, whatever their version (see keysChangedSince). */
const RECENT_S = 10;

export async function listKeys(sql: Sql): Promise<KeyRow[]> {
  return sql<KeyRow[]>`SELECT * FROM api_keys ORDER BY created_at, key_id`;
}

/** Revokes a key (again: no change). Returns its row, or null when there is no such key. */
export async function revokeKey(sql: Sql, keyId: string, by: string | null): Promise<KeyRow | null> {
  const [revoked] = await sql<KeyRow[]>`
    UPDATE api_keys SET revoked_at = now(), revoked_by = ${by}, version = nextval('api_key_versions')
    WHERE key_id = ${keyId} AND revoked_at IS NULL RETURNING *`;
  if (revoked) return revoked;
  const [existing] = await sql<KeyRow[]>`SELECT * FROM api_keys WHERE key_id = ${keyId}`;
  return existing ?? null;
}

/**
 * Creates the first admin key if no key exists at all (one engine wins when
 * several start together). Returns the new key's secret, or null.
 */
export async function createFirstKey(sql: Sql): Promise<{ keyId: string; key: string } | null> {
  return (await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(hashtext('margin-engine:first-key'))`;
    const [{ n }] = (await tx<{ n: number }[]>`SELECT count(*)::int AS n FROM api_keys`) as unknown as [{ n: number }];
    if (n > 0) return null;
    const { keyId, key } = newKey();
    await tx`INSERT INTO api_keys (key_id, name, role, key_hash) VALUES (${keyId}, 'first admin key', 'admin', ${hashKey(key)})`;
    return { keyId, key };
  })) as { keyId: string; key: string } | null;
}
