/** `npm run migrate`: applies the SQL migrations to DATABASE_URL / DATABASE_SCHEMA and exits. */
import { ConfigError, loadConfig } from '../config.js';
import { migrate } from '../store/migrate.js';
import { createSql } from '../store/postgres.js';
try {
    const config = loadConfig(process.env);
    const sql = createSql({ url: config.databaseUrl, schema: config.databaseSchema, poolSize: 1, connectTimeoutSeconds: 5 });
    try {
        const applied = await migrate(sql, config.databaseSchema);
        process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'schema is up to date\n');
    }
    finally {
        await sql.end({ timeout: 5 });
    }
}
catch (error) {
    process.stderr.write(`${error instanceof ConfigError ? error.message : `migration failed: ${error.message}`}\n`);
    process.exit(1);
}
//# sourceMappingURL=migrate.js.map