import { BOOT_FIELD, MarkBook } from './store/accounts.js';
import { loadScripts } from './store/scripts.js';
import { GroupCommitter, LiquidationIds } from './store/ledger.js';
import { RiskKeys } from './store/risk-index.js';
import { AccountWriter } from './services/account-writer.js';
import { LiquidationService } from './services/liquidation.js';
import { migrate } from './store/migrate.js';
import { createSql } from './store/postgres.js';
import { createRedis, KeySpace } from './store/redis.js';
import { AccountCache } from './services/account-cache.js';
import { AccountGate } from './services/account-gate.js';
import { AccountsView } from './services/accounts-view.js';
import { isPostgresUnavailable, withTimeout } from './services/dependencies.js';
import { MarksService } from './services/marks.js';
import { MarginReportService } from './services/margin-report.js';
import { Recovery } from './services/recovery.js';
import { TradingService } from './services/trading.js';
export async function createEngine(config, log, options = {}) {
    const sql = createSql({
        url: config.databaseUrl,
        schema: config.databaseSchema,
        poolSize: config.databasePoolSize,
        connectTimeoutSeconds: Math.max(1, Math.ceil(config.dependencyTimeoutMs / 1000)),
    });
    const redis = createRedis({ url: config.redisUrl, commandTimeoutMs: config.dependencyTimeoutMs });
    redis.on('error', (err) => log.warn({ err: err.message }, 'redis connection error'));
    try {
        await redis.connect();
        await loadScripts(redis);
        if (options.migrate ?? true) {
            const applied = await migrate(sql, config.databaseSchema);
            if (applied.length > 0)
                log.info({ applied }, 'applied migrations');
        }
    }
    catch (error) {
        redis.disconnect();
        await sql.end({ timeout: 1 });
        throw error;
    }
    const keys = new KeySpace(config.redisKeyPrefix, config.clientOrderRetentionS * 1000);
    const rates = { initial: config.initialMarginRate, maintenance: config.maintenanceMarginRate };
    const timeoutMs = config.dependencyTimeoutMs;
    const committer = new GroupCommitter(sql, {
        maxRows: config.commitBatchMax,
        maxConcurrent: config.commitConcurrency,
        earlyRows: config.commitEarlyRows,
        flushTimeoutMs: timeoutMs,
        isConnectionError: isPostgresUnavailable,
    });
    const markBook = new MarkBook(redis, keys);
    const cache = new AccountCache(config.accountCacheSize);
    const gate = new AccountGate(redis, keys, markBook, cache, {
        lockTtlMs: config.accountLockTtlMs,
        lockWaitMs: config.accountLockTtlMs + timeoutMs,
        marksMaxAgeMs: config.marksMaxAgeMs,
        trustedPath: config.trustedPath,
        // Half a timeout: a read or tick racing a Redis failure answers 503 well within a second.
        appliedWaitMs: Math.floor(timeoutMs / 2),
    });
    const risk = new RiskKeys(keys);
    const recovery = new Recovery({ redis, sql, keys, risk, rates, timeoutMs, log });
    if (options.recover ?? true) {
        try {
            await recovery.start();
        }
        catch (error) {
            redis.disconnect();
            await sql.end({ timeout: 1 });
            throw error;
        }
    }
    gate.startHeartbeat();
    const writer = new AccountWriter({
        redis,
        sql,
        keys,
        risk,
        gate,
        cache,
        marks: markBook,
        committer,
        rates,
        timeoutMs,
        log,
        onLagging: (accountId) => recovery.noteLagging(accountId),
    });
    const applied = (accountId) => gate.applied(accountId);
    const liquidation = new LiquidationService({ redis, keys, risk, gate, writer, ids: new LiquidationIds(sql), rates, timeoutMs, log });
    return {
        config,
        redis,
        sql,
        keys,
        committer,
        trading: new TradingService({ writer, liquidation, rates, log }),
        liquidation,
        accounts: new AccountsView({ redis, sql, keys, marks: markBook, rates, timeoutMs, applied }),
        marks: new MarksService({ redis, sql, keys, risk, markBook, liquidation, timeoutMs, committer, applied }),
        report: new MarginReportService({ redis, keys, risk, marks: markBook, rates, applied }),
        recovery,
        async readiness() {
            const ping = async (p) => {
                try {
                    await withTimeout(p(), timeoutMs, 'ping');
                    return true;
                }
                catch {
                    return false;
                }
            };
            // Redis is ready when it answers and holds a complete state (the boot marker).
            const redisReady = async () => {
                if ((await redis.hexists(keys.marks, BOOT_FIELD)) !== 1)
                    throw new Error('no boot marker');
            };
            const [r, pg] = await Promise.all([ping(redisReady), ping(() => sql `SELECT 1`)]);
            return { redis: r && recovery.ready, postgres: pg && !committer.unavailable };
        },
        async close() {
            await gate.stopHeartbeat();
            recovery.stop();
            await recovery.idle();
            // Operations answered at their commit may still be applying to Redis (and re-checking): let them finish.
            await gate.idle();
            await committer.close();
            redis.disconnect();
            await sql.end({ timeout: 5 });
        },
    };
}
//# sourceMappingURL=engine.js.map