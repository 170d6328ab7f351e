/**
 * The container files, checked without a Docker engine (none runs here):
 * the compose file parses and gives the engine everything it needs, and the
 * Dockerfile is multi-stage, runs as a non-root user with production
 * dependencies only, checks /health, and copies only paths that exist.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from '../../src/config.js';

const root = new URL('../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');

interface Compose {
  services: Record<string, { image?: string; build?: unknown; environment?: Record<string, string>; ports?: string[]; depends_on?: Record<string, { condition: string }> }>;
}

describe('docker-compose.yaml', () => {
  const compose = parse(read('docker-compose.yaml')) as Compose;
  const engine = compose.services.engine!;

  it('runs Redis, PostgreSQL and the engine built from the Dockerfile', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['engine', 'postgres', 'redis']);
    expect(engine.build).toBe('.');
    expect(engine.ports).toEqual(['127.0.0.1:8000:8000']);
    expect(engine.depends_on).toEqual({ redis: { condition: 'service_healthy' }, postgres: { condition: 'service_healthy' } });
  });

  it('gives the engine a configuration it accepts: all interfaces, the stores by service name, the admin key from .env', () => {
    const env = engine.environment!;
    expect(env.HOST).toBe('0.0.0.0');
    expect(env.REDIS_URL).toBe('redis://redis:6379');
    expect(env.DATABASE_URL).toBe('postgres://postgres@postgres:5432/postgres');
    expect(env.ADMIN_API_KEY).toMatch(/^\$\{ADMIN_API_KEY:\?/); // compose refuses to start without it
    // As compose would hand it over, with a key set in .env and LOG_LEVEL defaulted:
    const resolved = Object.fromEntries(
      Object.entries(env).map(([k, v]) => [k, v.replace(/\$\{ADMIN_API_KEY:\?[^}]*\}/, 'k'.repeat(40)).replace(/\$\{LOG_LEVEL:-([^}]*)\}/, '$1')]),
    );
    const config = loadConfig(resolved);
    expect(config).toMatchObject({ host: '0.0.0.0', port: 8000, auth: true, adminApiKey: 'k'.repeat(40), redisUrl: 'redis://redis:6379' });
  });

  it('runs Redis 7 and PostgreSQL 15, each with a health check the engine waits for', () => {
    expect(compose.services.redis!.image).toBe('redis:7-alpine');
    expect(compose.services.postgres!.image).toBe('postgres:15-alpine');
    const checks = compose as unknown as { services: Record<string, { healthcheck?: { test: string[] } }> };
    expect(checks.services.redis!.healthcheck!.test).toEqual(['CMD', 'redis-cli', 'ping']);
    expect(checks.services.postgres!.healthcheck!.test).toEqual(['CMD', 'pg_isready', '-U', 'postgres']);
  });
});

describe('Dockerfile', () => {
  const text = read('Dockerfile');
  const lines = text.split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));

  it('builds in one stage and runs from another with production dependencies only', () => {
    expect(lines.filter((l) => l.startsWith('FROM ')).length).toBe(2);
    expect(text).toMatch(/npm ci --omit=dev/);
    expect(text).toMatch(/COPY --from=build \/app\/dist \.\/dist/);
  });

  it('runs as the unprivileged node user, on all interfaces, with a health check on /health', () => {
    const runtime = text.slice(text.lastIndexOf('\nFROM '));
    expect(runtime).toMatch(/\nUSER node\n/);
    expect(runtime).toMatch(/HOST=0\.0\.0\.0/);
    expect(runtime).toMatch(/HEALTHCHECK [^\n]*\\\n[^\n]*\/health/);
    expect(runtime).toMatch(/CMD \["node", "--max-semi-space-size=32", "dist\/main\.js"\]/);
  });

  it('copies only paths that exist, and the migrations the engine applies at start-up', () => {
    const copied = lines.filter((l) => l.startsWith('COPY ') && !l.includes('--from')).flatMap((l) => l.split(/\s+/).slice(1, -1));
    expect(copied).toEqual(expect.arrayContaining(['package.json', 'package-lock.json', 'src', 'sql']));
    for (const path of copied) expect(existsSync(new URL(path, root)), path).toBe(true);
  });

  it('leaves node_modules, .env and the tests out of the build context', () => {
    const ignored = read('.dockerignore').split('\n');
    expect(ignored).toEqual(expect.arrayContaining(['node_modules', '.env', 'tests', 'dist']));
  });
});
