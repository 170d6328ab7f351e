import { str } from '../domain/decimal.js';
import { DependencyUnavailable } from '../domain/errors.js';
import { storeMark } from '../store/accounts.js';
import { upsertMark } from '../store/marks.js';
import { endangeredBy } from '../store/risk-index.js';
import { postgresCall, redisCall } from './dependencies.js';
export class MarksService {
    deps;
    constructor(deps) {
        this.deps = deps;
    }
    async setMark(symbol, price) {
        const { redis, sql, keys, risk, timeoutMs, committer, liquidation } = this.deps;
        if (committer.unavailable)
            throw new DependencyUnavailable('postgres');
        // Every trade acknowledged before this tick is in Redis, and in the risk
        // index the tick reads, before the mark moves: the tick itself checks
        // them. (If Redis cannot take them, this is a 503 with nothing changed.)
        await this.deps.applied();
        const version = await postgresCall(() => upsertMark(sql, symbol, str(price)), timeoutMs);
        // Publish the mark, then look for the accounts it endangers: an account
        // indexed after this read sees the new mark when it re-checks itself.
        // One round trip: the three go out together and Redis runs them in order.
        const endangered = await redisCall(async () => {
            const [epoch, , candidates] = await Promise.all([
                storeMark(redis, keys, symbol, str(price), version),
                redis.incr(risk.rev),
                endangeredBy(redis, risk, symbol, price),
            ]);
            if (epoch > 0)
                this.deps.markBook.moved(epoch);
            return candidates;
        });
        const liquidated = await liquidation.afterTick(symbol, price, endangered);
        return { symbol, price: str(price), liquidated };
    }
}
//# sourceMappingURL=marks.js.map