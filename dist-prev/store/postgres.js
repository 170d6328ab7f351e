import postgres from 'postgres';
/**
 * A postgres.js pool bound to one schema. NUMERIC and BIGINT come back as
 * strings (postgres.js's default), which is what decimal.js wants.
 */
export function createSql(options) {
    return postgres(options.url, {
        max: options.poolSize,
        connect_timeout: options.connectTimeoutSeconds,
        idle_timeout: 60,
        onnotice: () => { },
        connection: { search_path: options.schema, application_name: 'margin-engine' },
    });
}
//# sourceMappingURL=postgres.js.map