/**
 * The accounts this process wrote last, as it committed them: the state at
 * a ledger sequence. Only committed states are stored, so an entry is the
 * ledger's state at its sequence, whoever else writes the account. The peek
 * path uses an entry only when Redis says the account is still at that
 * sequence; the trusted path uses it as it is, and the ledger's key refuses
 * a commit that followed a stale entry (see AccountGate). Bounded: the least
 * recently used entries go first.
 */
import type { StoredAccount } from '../store/account-state.js';

export class AccountCache {
  private readonly entries = new Map<number, StoredAccount>();

  constructor(private readonly capacity: number) {}

  get(accountId: number): StoredAccount | undefined {
    const account = this.entries.get(accountId);
    if (account !== undefined) {
      // Map keeps insertion order: move it to the young end.
      this.entries.delete(accountId);
      this.entries.set(accountId, account);
    }
    return account;
  }

  set(account: StoredAccount): void {
    if (this.capacity <= 0) return;
    this.entries.delete(account.accountId);
    this.entries.set(account.accountId, account);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
  }

  /** Replaces the account's entry if it has one (keeping its place); an account not cached stays out, so a bulk write does not push out the working set. */
  replace(account: StoredAccount): void {
    if (this.entries.has(account.accountId)) this.entries.set(account.accountId, account);
  }

  delete(accountId: number): void {
    this.entries.delete(accountId);
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}
