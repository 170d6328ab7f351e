import postgres from 'postgres';

export type Sql = postgres.Sql;

export interface PostgresOptions {
  readonly url: string;
  readonly schema: string;
  readonly poolSize: number;
  readonly connectTimeoutSeconds: number;
  /**
   * Commits on this pool do not wait for the WAL flush (synchronous_commit
   * off for its connections): for writes whose loss in a crash of
   * PostgreSQL's host is harmless (see commitMark).
   */
  readonly asyncCommit?: boolean;
}

/**
 * A postgres.js pool bound to one schema. NUMERIC and BIGINT come back as
 * strings (postgres.js's default), which is what decimal.js wants.
 */
export function createSql(options: PostgresOptions): Sql {
  return postgres(options.url, {
    max: options.poolSize,
    connect_timeout: options.connectTimeoutSeconds,
    idle_timeout: 60,
    onnotice: () => {},
    connection: {
      search_path: options.schema,
      application_name: 'margin-engine',
      ...(options.asyncCommit ? { synchronous_commit: 'off' } : {}),
    },
  });
}
