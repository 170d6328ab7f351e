import { readdir, readFile } from 'node:fs/promises';
const SQL_DIR = new URL('../../sql/', import.meta.url);
export async function loadMigrations(dir = SQL_DIR) {
    const files = (await readdir(dir)).filter((f) => /^\d+_[\w-]+\.sql$/.test(f)).sort();
    const migrations = [];
    for (const file of files) {
        const version = Number.parseInt(file, 10);
        if (migrations.some((m) => m.version === version))
            throw new Error(`duplicate migration version ${version}`);
        migrations.push({ version, name: file, text: await readFile(new URL(file, dir), 'utf8') });
    }
    return migrations;
}
/**
 * Applies the migrations in `sql/` that the schema has not seen, in order, in
 * one transaction under an advisory lock, so two engines starting together
 * apply each migration exactly once. Returns the names applied now.
 */
export async function migrate(sql, schema, migrations) {
    const all = migrations ?? (await loadMigrations());
    return sql.begin(async (tx) => {
        await tx `SELECT pg_advisory_xact_lock(hashtext(${'margin-engine:migrate:' + schema}))`;
        await tx `CREATE SCHEMA IF NOT EXISTS ${tx(schema)}`;
        await tx `SET LOCAL search_path TO ${tx(schema)}`;
        await tx `
      CREATE TABLE IF NOT EXISTS schema_migrations (
        version    integer     PRIMARY KEY,
        name       text        NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`;
        const done = new Set((await tx `SELECT version FROM schema_migrations`).map((r) => r.version));
        const applied = [];
        for (const m of all) {
            if (done.has(m.version))
                continue;
            await tx.unsafe(m.text);
            await tx `INSERT INTO schema_migrations (version, name) VALUES (${m.version}, ${m.name})`;
            applied.push(m.name);
        }
        return applied;
    });
}
//# sourceMappingURL=migrate.js.map