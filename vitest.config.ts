import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    globalSetup: ['tests/helpers/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Under CI a JSON report is written too, so .ci/run can print a plain "N passed, N failed" line.
    reporters: process.env.CI ? ['default', ['json', { outputFile: 'test-results.json' }]] : ['default'],
    projects: [
      {
        extends: true,
        test: {
          name: 'one-node',
          include: ['tests/**/*.test.ts'],
          // Every script call checks that its keys share one slot (src/store/scripts.ts), as a Redis Cluster would.
          env: { REDIS_ASSERT_ONE_SLOT: '1' },
        },
      },
      {
        // The HTTP and integration suites again with the keys spread over four index shards on the same node.
        extends: true,
        test: {
          name: 'shards',
          include: ['tests/http/**/*.test.ts', 'tests/integration/**/*.test.ts'],
          env: { REDIS_ASSERT_ONE_SLOT: '1', TEST_REDIS_SHARDS: '4' },
        },
      },
      {
        // The HTTP and integration suites against a private three-primary, three-replica Redis Cluster
        // (tests/helpers/redis-cluster.ts), with the cluster's default of 16 index shards.
        extends: true,
        test: {
          name: 'cluster',
          include: ['tests/http/**/*.test.ts', 'tests/integration/**/*.test.ts'],
          // Tests of a private redis-server, or of Redis behind a proxy they cut, run against their own node in the other projects.
          exclude: [
            'tests/integration/{startup,crash,marks-fault,shutdown,outages,ack-at-commit,funding-crash}.test.ts',
          ],
          env: { REDIS_ASSERT_ONE_SLOT: '1', TEST_REDIS_CLUSTER: '1' },
        },
      },
    ],
  },
});
