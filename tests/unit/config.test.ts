import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

describe('configuration', () => {
  it('has the documented defaults', () => {
    const c = loadConfig({});
    expect(c.port).toBe(8000);
    expect(c.host).toBe('127.0.0.1');
    expect(c.redisUrl).toBe('redis://127.0.0.1:6379');
    expect(c.databaseUrl).toBe('postgres://postgres@127.0.0.1:5432/postgres');
    expect(c.initialMarginRate.toString()).toBe('0.2');
    expect(c.maintenanceMarginRate.toString()).toBe('0.1');
    expect(c.auth).toBe(true);
    expect(c.marketDefaults.tradePriceBand.toString()).toBe('0.05');
    expect(c.marketDefaults.maxMarkMove.toString()).toBe('0');
    expect(c.shutdownTimeoutMs).toBe(10_000);
  });

  it('refuses AUTH=off on a non-loopback HOST, naming AUTH', () => {
    expect(() => loadConfig({ AUTH: 'off', HOST: '0.0.0.0' })).toThrow(ConfigError);
    expect(() => loadConfig({ AUTH: 'off', HOST: '0.0.0.0' })).toThrow(/AUTH/);
  });

  it('accepts AUTH=off on a loopback HOST', () => {
    const c = loadConfig({ AUTH: 'off', HOST: '127.0.0.1' });
    expect(c.auth).toBe(false);
    expect(c.host).toBe('127.0.0.1');
  });

  it('refuses an ADMIN_API_KEY shorter than 32 characters, naming ADMIN_API_KEY', () => {
    const short = 'x'.repeat(31);
    expect(() => loadConfig({ ADMIN_API_KEY: short })).toThrow(ConfigError);
    expect(() => loadConfig({ ADMIN_API_KEY: short })).toThrow(/ADMIN_API_KEY/);
    expect(loadConfig({ ADMIN_API_KEY: 'x'.repeat(32) }).adminApiKey).toBe('x'.repeat(32));
  });

  it('reads margin rates exactly', () => {
    const c = loadConfig({ INITIAL_MARGIN_RATE: '0.05', MAINTENANCE_MARGIN_RATE: '0.025' });
    expect(c.initialMarginRate.toString()).toBe('0.05');
    expect(c.maintenanceMarginRate.toString()).toBe('0.025');
  });

  it.each([
    ['PORT', 'eighty'],
    ['PORT', '70000'],
    ['REDIS_URL', 'http://localhost'],
    ['DATABASE_URL', 'not a url'],
    ['INITIAL_MARGIN_RATE', '1.5'],
    ['MAINTENANCE_MARGIN_RATE', 'ten percent'],
    ['LOG_LEVEL', 'loud'],
    ['DATABASE_SCHEMA', 'Robert"); DROP'],
    ['SHUTDOWN_TIMEOUT_MS', '0'],
  ])('refuses %s=%s with a message naming the variable', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(name));
  });

  it('refuses a maintenance rate above the initial rate', () => {
    expect(() => loadConfig({ INITIAL_MARGIN_RATE: '0.1', MAINTENANCE_MARGIN_RATE: '0.2' })).toThrow(/MAINTENANCE_MARGIN_RATE/);
  });
});

describe('.env.example', () => {
  it('lists variables whose values are the defaults, and parses', async () => {
    const { readFile } = await import('node:fs/promises');
    const text = await readFile(new URL('../../.env.example', import.meta.url), 'utf8');
    const env = Object.fromEntries(
      text
        .split('\n')
        .filter((l) => /^[A-Z_]+=/.test(l))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    for (const name of ['HOST', 'AUTH', 'ADMIN_API_KEY', 'TRADE_PRICE_BAND', 'MARK_MAX_MOVE', 'REQUEST_TIMEOUT_MS', 'MAX_CONNECTIONS', 'LOT_SIZE', 'SHUTDOWN_TIMEOUT_MS']) {
      expect(Object.keys(env)).toContain(name);
    }
    expect(loadConfig(env)).toEqual(loadConfig({}));
  });
});
