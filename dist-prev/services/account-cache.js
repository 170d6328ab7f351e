export class AccountCache {
    capacity;
    entries = new Map();
    constructor(capacity) {
        this.capacity = capacity;
    }
    get(accountId) {
        const account = this.entries.get(accountId);
        if (account !== undefined) {
            // Map keeps insertion order: move it to the young end.
            this.entries.delete(accountId);
            this.entries.set(accountId, account);
        }
        return account;
    }
    set(account) {
        if (this.capacity <= 0)
            return;
        this.entries.delete(account.accountId);
        this.entries.set(account.accountId, account);
        if (this.entries.size > this.capacity)
            this.entries.delete(this.entries.keys().next().value);
    }
    delete(accountId) {
        this.entries.delete(accountId);
    }
    clear() {
        this.entries.clear();
    }
    get size() {
        return this.entries.size;
    }
}
//# sourceMappingURL=account-cache.js.map