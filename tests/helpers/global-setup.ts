/**
 * Finds the Redis and PostgreSQL the integration tests use, once per run:
 * TEST_REDIS_URL / TEST_DATABASE_URL, else REDIS_URL / DATABASE_URL, else
 * containers started with testcontainers when a Docker engine answers, else
 * the standard local ports. Each test file then isolates itself in its own
 * schema and key prefix (see engine.ts), and removes them afterwards.
 */
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
    databaseUrl: string;
    /** The test cluster's nodes (REDIS_CLUSTER_NODES) in the `cluster` project; '' elsewhere. */
    redisClusterNodes: string;
  }
}

const LOCAL_REDIS = 'redis://127.0.0.1:6379';
const LOCAL_POSTGRES = 'postgres://postgres@127.0.0.1:5432/postgres';

async function dockerAnswers(): Promise<boolean> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    await getContainerRuntimeClient();
    return true;
  } catch {
    return false;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const env = process.env;
  let redisUrl = env.TEST_REDIS_URL || env.REDIS_URL;
  let databaseUrl = env.TEST_DATABASE_URL || env.DATABASE_URL;
  const stops: (() => Promise<unknown>)[] = [];

  if ((!redisUrl || !databaseUrl) && (await dockerAnswers())) {
    if (!redisUrl) {
      const { RedisContainer } = await import('@testcontainers/redis');
      const redis = await new RedisContainer('redis:7-alpine').start();
      redisUrl = redis.getConnectionUrl();
      stops.push(() => redis.stop());
    }
    if (!databaseUrl) {
      const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
      const pg = await new PostgreSqlContainer('postgres:15-alpine').start();
      databaseUrl = pg.getConnectionUri();
      stops.push(() => pg.stop());
    }
  }
  // No URL and no Docker engine: the services this machine runs on their standard ports.
  project.provide('redisUrl', redisUrl ?? LOCAL_REDIS);
  project.provide('databaseUrl', databaseUrl ?? LOCAL_POSTGRES);
  // The `cluster` project runs against a private three-primary, three-replica cluster of its own.
  if (project.config.env?.TEST_REDIS_CLUSTER === '1') {
    const { startCluster } = await import('./redis-cluster.js');
    const cluster = await startCluster();
    stops.push(() => cluster.stop());
    project.provide('redisClusterNodes', cluster.nodes);
  } else {
    project.provide('redisClusterNodes', '');
  }

  return async () => {
    for (const stop of stops) await stop();
  };
}
