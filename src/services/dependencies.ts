/**
 * Telling "a dependency is down" apart from "our bug", and bounding how long a
 * request waits on either store.
 */
import { DependencyUnavailable, EngineError } from '../domain/errors.js';
import { TimeoutError, withTimeout } from '../lib/timeout.js';

// Re-exported so callers that take both from here keep one import.
export { TimeoutError, withTimeout };

const POSTGRES_CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'CONNECT_TIMEOUT',
  'CONNECTION_CLOSED',
  'CONNECTION_DESTROYED',
  'CONNECTION_ENDED',
]);

/** SQLSTATE classes meaning the server cannot serve now: connection (08), resources (53), operator intervention (57). */
const POSTGRES_UNAVAILABLE_STATES = /^(08|53|57)/;

export function isPostgresUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code !== 'string') return false;
  return POSTGRES_CONNECTION_CODES.has(code) || (code.length === 5 && POSTGRES_UNAVAILABLE_STATES.test(code));
}

/** Anything ioredis raises that is not a server's reply to a command (a script bug, a wrong type) is an outage. */
export function isRedisUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error instanceof EngineError) return false;
  return error.name !== 'ReplyError';
}

/** Runs a Redis call; an outage (or a call slower than the client's command timeout) becomes a 503. */
export async function redisCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (isRedisUnavailable(error)) throw new DependencyUnavailable('redis', error);
    throw error;
  }
}

/** Runs a PostgreSQL call under a deadline; an outage or a timeout becomes a 503. */
export async function postgresCall<T>(call: () => Promise<T>, timeoutMs: number): Promise<T> {
  try {
    return await withTimeout(call(), timeoutMs, 'postgres');
  } catch (error) {
    if (error instanceof TimeoutError || isPostgresUnavailable(error)) throw new DependencyUnavailable('postgres', error);
    throw error;
  }
}
