/**
 * Logs: at info level, one line per business event (not per request);
 * requests are one line each at debug; LOG_FORMAT=pretty prints readable lines.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inspector, isolationEnv, newIsolation, startTestEngine, type EngineFixture } from '../helpers/engine.js';
import { EngineProcess, freePort } from '../helpers/processes.js';

const lines: { level: number; msg: string }[] = [];
let f: EngineFixture;

beforeAll(async () => {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as { level: number; msg: string });
      done();
    },
  });
  f = await startTestEngine({ log: pino({ level: 'debug' }, sink) });
});

afterAll(async () => {
  await f?.close();
});

describe('logs', () => {
  it('at info level are business events, one line each; requests are one debug line each', async () => {
    lines.length = 0;
    await f.post('/mark-price', { symbol: 'LOG-PERP', price: '100' });
    await f.post('/accounts/3/deposit', { amount: '25' });
    await f.post('/trade', { account_id: 3, symbol: 'LOG-PERP', side: 'BUY', quantity: '1', price: '100' });
    await f.get('/positions/3');
    await f.post('/mark-price', { symbol: 'LOG-PERP', price: '80' }); // liquidates account 3
    await f.put('/markets/LOG-PERP', { status: 'halted' });
    const info = lines.filter((l) => l.level >= 30).map((l) => l.msg);
    expect(info).toEqual(['market listed by its first mark', 'account liquidated', 'market changed']);
    const requests = lines.filter((l) => l.level === 20 && l.msg === 'request');
    expect(requests).toHaveLength(6);
    expect(requests[3]).toMatchObject({ method: 'GET', route: '/positions/:account_id', status: 200 });
  });
});

describe('LOG_FORMAT=pretty', () => {
  it('prints one readable line per event instead of JSON', async () => {
    const pIso = newIsolation();
    const child = new EngineProcess(
      { ...isolationEnv(pIso), LOG_LEVEL: 'info', LOG_FORMAT: 'pretty' },
      await freePort(),
    );
    const pDb = inspector(pIso);
    try {
      await child.start();
      const listening = child.stderr.split('\n').find((l) => l.includes('Server listening'));
      expect(listening).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: Server listening at http:\/\/127\.0\.0\.1:\d+$/);
      expect(child.stderr).not.toMatch(/^\{"level"/m);
    } finally {
      await child.kill();
      await pDb.destroy();
    }
  });
});
