/**
 * Start-up with a store that cannot be reached: the error names the store
 * and its address, and never its credentials.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createEngine } from '../../src/engine.js';
import { newIsolation, testConfig } from '../helpers/engine.js';
import { freePort } from '../helpers/processes.js';

const quiet = pino({ level: 'silent' });

describe('start-up with a store down', () => {
  it('names Redis and its address, without the password', async () => {
    const port = await freePort();
    const config = testConfig(newIsolation(), { REDIS_URL: `redis://ops:s3cret-pass@127.0.0.1:${port}/0` });
    const failure = await createEngine(config, quiet).then(
      () => null,
      (error: unknown) => error as Error,
    );
    expect(failure?.message).toMatch(new RegExp(`^cannot reach Redis at 127\\.0\\.0\\.1:${port}/0: `));
    expect(failure?.message).not.toContain('s3cret-pass');
    expect(failure?.message).not.toContain('ops');
  });

  it('names PostgreSQL, its address and database, without the password', async () => {
    const port = await freePort();
    const config = testConfig(newIsolation(), { DATABASE_URL: `postgres://bob:hunter2@127.0.0.1:${port}/trades` });
    const failure = await createEngine(config, quiet).then(
      () => null,
      (error: unknown) => error as Error,
    );
    expect(failure?.message).toMatch(new RegExp(`^cannot reach PostgreSQL at 127\\.0\\.0\\.1:${port}/trades: `));
    expect(failure?.message).not.toContain('hunter2');
  });
});
