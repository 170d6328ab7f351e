/**
 * Who is calling: API keys checked against an in-memory copy of the key
 * table, so the check on the hot path is one SHA-256 and a constant-time
 * comparison, with no round trip.
 *
 * Every engine process polls PostgreSQL for key changes (creations and
 * revocations, by a rising version) every POLL_MS, so a key revoked through
 * any process is refused by every process within a second. A key id this
 * process has not seen yet (created through another process a moment ago)
 * triggers one shared refresh before the answer.
 */
import { timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { KeyResponse } from '../http/schemas.js';
import { EngineError } from '../domain/errors.js';
import { createFirstKey, hashKey, insertKey, keysChangedSince, listKeys, revokeKey, type KeyRow, type Role } from '../store/api-keys.js';
import type { Sql } from '../store/postgres.js';
import { postgresCall } from './dependencies.js';

export interface Principal {
  /** The key's id, recorded as the actor of what it does. */
  readonly keyId: string;
  readonly role: Role;
  /** The accounts an `account` key may see (empty for every other role). */
  readonly accountIds: ReadonlySet<number>;
}

/** The actor recorded for ADMIN_API_KEY, which is not stored. */
export const ADMIN_ENV_KEY_ID = 'admin-env';

/** How often each process reads key changes: a revocation reaches every process within this plus one query. */
export const POLL_MS = 250;
/** Least time between two refreshes caused by unknown key ids (a flood of made-up keys costs at most this many queries). */
const MISS_REFRESH_SPACING_MS = 25;
/** Longest accepted key text (ours are 60 characters; ADMIN_API_KEY at most 256). */
const MAX_KEY_LENGTH = 512;

interface Known {
  readonly hash: Buffer;
  /** Null once revoked. */
  readonly principal: Principal | null;
}

/** A key as answered (the wire schema's type: the service builds that shape). */
export type KeyView = KeyResponse;

export interface ApiKeysOptions {
  readonly adminKey: string | null;
  readonly timeoutMs: number;
  readonly log: Logger;
}

export class ApiKeys {
  private readonly known = new Map<string, Known>();
  private readonly adminHash: Buffer | null;
  private readonly adminPrincipal: Principal = { keyId: ADMIN_ENV_KEY_ID, role: 'admin', accountIds: new Set() };
  private version = 0;
  private refreshing: Promise<void> | null = null;
  /** The refresh that misses wait for (it starts after the one running now, if any). */
  private nextRefresh: Promise<void> | null = null;
  private lastRefreshStart = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | null = null;
  private failing = false;

  constructor(
    private readonly sql: Sql,
    private readonly options: ApiKeysOptions,
  ) {
    this.adminHash = options.adminKey === null ? null : hashKey(options.adminKey);
  }

  /** Loads every key, then polls for changes. */
  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh().catch(() => undefined), POLL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /**
   * The principal behind an `Authorization` header, or null (401): missing,
   * malformed, unknown or revoked. Synchronous for a key id this process
   * knows; a promise when it must first ask PostgreSQL.
   */
  authenticate(header: string | undefined): Principal | null | Promise<Principal | null> {
    if (header === undefined || header.length > MAX_KEY_LENGTH + 7) return null;
    if (header.length < 8 || header.slice(0, 7).toLowerCase() !== 'bearer ') return null;
    const token = header.slice(7).trim();
    if (token === '' || /\s/.test(token)) return null;
    const hash = hashKey(token);
    if (this.adminHash !== null && timingSafeEqual(hash, this.adminHash)) return this.adminPrincipal;
    const dot = token.indexOf('.');
    if (dot <= 0) return null;
    const keyId = token.slice(0, dot);
    const known = this.known.get(keyId);
    if (known !== undefined) return this.check(known, hash);
    return this.refreshAfterMiss().then(() => {
      const found = this.known.get(keyId);
      return found === undefined ? null : this.check(found, hash);
    });
  }

  private check(known: Known, hash: Buffer): Principal | null {
    // Constant time in the secret: the id only picks which hash to compare with.
    return timingSafeEqual(hash, known.hash) ? known.principal : null;
  }

  async create(input: { name: string; role: Role; accountIds: readonly number[] }, createdBy: string | null): Promise<{ view: KeyView; key: string }> {
    const { row, key } = await postgresCall(() => insertKey(this.sql, { ...input, createdBy }), this.options.timeoutMs);
    this.learn(row);
    this.options.log.info({ keyId: row.key_id, role: row.role, name: row.name, by: createdBy }, 'api key created');
    return { view: viewOf(row), key };
  }

  async list(): Promise<KeyView[]> {
    return (await postgresCall(() => listKeys(this.sql), this.options.timeoutMs)).map(viewOf);
  }

  /** Revokes a key: refused here at once, by every other process within a second. */
  async revoke(keyId: string, by: string | null): Promise<KeyView> {
    const row = await postgresCall(() => revokeKey(this.sql, keyId, by), this.options.timeoutMs);
    if (row === null) throw new EngineError('KEY_NOT_FOUND', `no key ${clipId(keyId)}`, { key_id: clipId(keyId) });
    this.learn(row);
    this.options.log.info({ keyId, by }, 'api key revoked');
    return viewOf(row);
  }

  /**
   * First start: with no key at all and no ADMIN_API_KEY, creates one admin
   * key and returns its secret (the caller prints it once); otherwise null.
   */
  async ensureFirstKey(): Promise<{ keyId: string; key: string } | null> {
    if (this.options.adminKey !== null) return null;
    const created = await createFirstKey(this.sql);
    if (created) {
      await this.refresh();
      this.options.log.info({ keyId: created.keyId }, 'api key created (first admin key)');
    }
    return created;
  }

  /**
   * A refresh that starts after this call: one already running may have
   * started before the key was committed. Every miss meanwhile shares the
   * same next refresh, and refreshes start at least MISS_REFRESH_SPACING_MS
   * apart, so a flood of made-up keys costs a bounded number of queries.
   */
  private refreshAfterMiss(): Promise<void> {
    this.nextRefresh ??= (async () => {
      await this.refreshing?.catch(() => undefined);
      const wait = MISS_REFRESH_SPACING_MS - (performance.now() - this.lastRefreshStart);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      this.nextRefresh = null;
      await this.refresh().catch(() => undefined);
    })();
    return this.nextRefresh;
  }

  private refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      await Promise.resolve(); // so `refreshing` is set before the body runs
      this.lastRefreshStart = performance.now();
      try {
        const rows = await postgresCall(() => keysChangedSince(this.sql, this.version), this.options.timeoutMs);
        for (const row of rows) {
          this.learn(row);
          this.version = Math.max(this.version, Number(row.version));
        }
        if (this.failing) this.options.log.info('api keys readable again');
        this.failing = false;
      } catch (error) {
        // Keys known so far stay as they are until PostgreSQL answers again.
        if (!this.failing) this.options.log.warn({ err: (error as Error).message }, 'cannot read api key changes');
        this.failing = true;
        throw error;
      } finally {
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }

  /**
   * Takes a key's row into the in-memory table. Only a refresh advances the
   * version read up to: a row this process wrote itself may be newer than
   * changes made elsewhere that the next poll must still read.
   */
  private learn(row: KeyRow): void {
    const principal: Principal | null =
      row.revoked_at === null ? { keyId: row.key_id, role: row.role, accountIds: new Set(row.account_ids.map(Number)) } : null;
    this.known.set(row.key_id, { hash: row.key_hash, principal });
  }
}

const clipId = (id: string) => (id.length > 64 ? `${id.slice(0, 64)}…` : id);

function viewOf(row: KeyRow): KeyView {
  return {
    key_id: row.key_id,
    name: row.name,
    role: row.role,
    account_ids: row.account_ids.map(Number),
    created_at: row.created_at.toISOString(),
    created_by: row.created_by,
    revoked_at: row.revoked_at === null ? null : row.revoked_at.toISOString(),
    revoked_by: row.revoked_by,
  };
}
