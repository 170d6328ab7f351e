/**
 * `npm run keys -- create --role R --name N [--accounts 1,2]` creates a key
 * and prints it alone on the last line (its secret is shown only then);
 * `npm run keys -- list` lists keys without secrets;
 * `npm run keys -- revoke KEY_ID` revokes one (every engine refuses it within a second).
 * Talks to PostgreSQL only (DATABASE_URL, DATABASE_SCHEMA), applying migrations first.
 */
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config.js';
import { insertKey, listKeys, revokeKey, ROLES, type Role } from '../store/api-keys.js';
import { migrate } from '../store/migrate.js';
import { createSql } from '../store/postgres.js';

const USAGE = `usage:
  npm run keys -- create --role <${ROLES.join('|')}> --name <name> [--accounts 1,2,...]
  npm run keys -- list
  npm run keys -- revoke <key_id>`;

class UsageError extends Error {}

async function run(argv: string[]): Promise<void> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { role: { type: 'string' }, name: { type: 'string' }, accounts: { type: 'string' } },
  });
  const [command, ...rest] = positionals;
  const config = loadConfig(process.env);
  const sql = createSql({ url: config.databaseUrl, schema: config.databaseSchema, poolSize: 2, connectTimeoutSeconds: 5 });
  try {
    await migrate(sql, config.databaseSchema);
    if (command === 'create') {
      const role = values.role as Role | undefined;
      if (!role || !ROLES.includes(role)) throw new UsageError(`--role must be one of ${ROLES.join(', ')}`);
      const name = values.name?.trim();
      if (!name || name.length > 100) throw new UsageError('--name is required (1-100 characters)');
      const accountIds = values.accounts === undefined ? [] : values.accounts.split(',').map((s) => s.trim());
      if (accountIds.some((s) => !/^[1-9][0-9]{0,15}$/.test(s))) throw new UsageError('--accounts must be positive integers separated by commas');
      if ((role === 'account') !== (accountIds.length > 0)) throw new UsageError('--accounts is required for an account key and only for one');
      const { row, key } = await insertKey(sql, { name, role, accountIds: accountIds.map(Number), createdBy: null });
      const scope = row.account_ids.length > 0 ? ` for accounts ${row.account_ids.join(',')}` : '';
      process.stdout.write(`created ${row.role} key ${row.key_id} (${row.name})${scope}; the key is shown only now:\n${key}\n`);
    } else if (command === 'list') {
      const rows = await listKeys(sql);
      for (const r of rows) {
        const scope = r.account_ids.length > 0 ? ` accounts=${r.account_ids.join(',')}` : '';
        const state = r.revoked_at === null ? 'active' : `revoked ${r.revoked_at.toISOString()}`;
        process.stdout.write(`${r.key_id}  ${r.role}${scope}  "${r.name}"  created ${r.created_at.toISOString()}  ${state}\n`);
      }
      process.stdout.write(`${rows.length} key(s)\n`);
    } else if (command === 'revoke') {
      const keyId = rest[0];
      if (!keyId) throw new UsageError('revoke needs a key id');
      const row = await revokeKey(sql, keyId, null);
      if (row === null) throw new UsageError(`no key ${keyId}`);
      process.stdout.write(`revoked ${row.key_id} at ${row.revoked_at!.toISOString()}\n`);
    } else {
      throw new UsageError(command === undefined ? 'no command given' : `unknown command ${command}`);
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
}

try {
  await run(process.argv.slice(2));
} catch (error) {
  if (error instanceof UsageError) process.stderr.write(`${error.message}\n${USAGE}\n`);
  else if (error instanceof ConfigError) process.stderr.write(`${error.message}\n`);
  else process.stderr.write(`keys failed: ${(error as Error).message}\n`);
  process.exit(error instanceof UsageError ? 64 : 1);
}
