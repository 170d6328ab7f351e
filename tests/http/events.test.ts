/**
 * GET /events (Server-Sent Events) against real Redis and PostgreSQL, read
 * over a real socket: what each event carries, the filters, an account key's
 * confinement, resuming after an id without loss (including 100,000 events
 * back), every engine process's stream carrying every process's events, and
 * a consumer that stops reading being dropped instead of buffered for.
 */
import http from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, call, startEngine, startTestEngine, type EngineFixture, type TestEngine } from '../helpers/engine.js';
import { until } from '../helpers/until.js';

interface Received {
  readonly id: string;
  readonly type: string;
  readonly data: any;
}

/**
 * An SSE client over node:http, one connection of its own per stream (no
 * pooled connections left behind for the server to wait on when it closes).
 */
class Stream {
  readonly events: Received[] = [];
  status = 0;
  body: any = null;
  private request: http.ClientRequest | null = null;

  static open(base: string, query = '', options: { key?: string | null; lastEventId?: string } = {}): Promise<Stream> {
    const s = new Stream();
    const headers: http.OutgoingHttpHeaders = {};
    const key = options.key === undefined ? ADMIN_KEY : options.key;
    if (key !== null) headers.authorization = `Bearer ${key}`;
    if (options.lastEventId) headers['last-event-id'] = options.lastEventId;
    return new Promise((resolve, reject) => {
      s.request = http.get(`${base}/events${query}`, { headers, agent: false }, (res) => {
        s.status = res.statusCode ?? 0;
        res.setEncoding('utf8');
        let buffer = '';
        if (s.status !== 200) {
          res.on('data', (c: string) => (buffer += c));
          res.on('end', () => {
            s.body = JSON.parse(buffer);
            resolve(s);
          });
          return;
        }
        res.on('data', (chunk: string) => {
          buffer += chunk;
          let end: number;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const fields = new Map<string, string>();
            for (const line of block.split('\n')) {
              const colon = line.indexOf(':');
              if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1).trimStart());
            }
            if (fields.has('event')) s.events.push({ id: fields.get('id')!, type: fields.get('event')!, data: JSON.parse(fields.get('data')!) });
          }
        });
        res.on('error', () => undefined);
        resolve(s);
      });
      s.request.on('error', reject);
    });
  }

  /** Waits until `n` events (of `type`, if given) have arrived; returns them. */
  async wait(n: number, type?: string, timeoutMs = 10_000): Promise<Received[]> {
    const of = () => (type === undefined ? this.events : this.events.filter((e) => e.type === type));
    await until(() => of().length, { ok: (k) => k >= n, timeoutMs, what: `${n} ${type ?? ''} events` });
    return of();
  }

  async close(): Promise<void> {
    this.request?.destroy();
  }
}

/** Listens on a free loopback port; the base URL. */
const listen = (e: TestEngine) => e.app.listen({ host: '127.0.0.1', port: 0 });

let t: EngineFixture;
let base: string;

beforeAll(async () => {
  t = await startTestEngine();
  base = await t.listen();
  await t.mark('BTC-PERP', '50000');
  await t.mark('ETH-PERP', '3000');
});

afterAll(async () => {
  await t?.close();
});

describe('GET /events', () => {
  it('streams each trade, mark and liquidation as it commits, with increasing ids', async () => {
    const s = await Stream.open(base);
    expect(s.status).toBe(200);
    const a = t.freshAccount();
    await t.deposit(a, '1000');
    const trade = await t.trade(a, 'BTC-PERP', 'BUY', '0.1', '50000');
    expect(trade.status).toBe(200);
    await t.mark('BTC-PERP', '41000'); // equity 100 < maintenance 410: liquidated
    const events = await s.wait(5);
    await s.close();
    await t.mark('BTC-PERP', '50000');
    // The margin call (healthy → liquidatable) comes before the liquidation it leads to.
    expect(events.map((e) => e.type)).toEqual(['trade', 'mark', 'margin_call', 'trade', 'liquidation']);
    const [opened, mark, call, closing, liquidation] = events;
    // At 41000: equity 1000 − 0.1·9000 = 100, initial margin 0.2·4100 = 820, maintenance 410.
    expect(call!.data).toEqual({
      margin_call_id: expect.any(Number),
      account_id: a,
      status: 'liquidatable',
      previous_status: 'healthy',
      equity: '100',
      initial_margin: '820',
      maintenance_margin: '410',
      marks: { 'BTC-PERP': '41000' },
      cause: 'tick',
      symbol: 'BTC-PERP',
      funding_id: null,
      created_at: expect.any(String),
    });
    expect(opened!.data).toEqual({
      trade_id: trade.body.trade_id,
      account_id: a,
      symbol: 'BTC-PERP',
      side: 'BUY',
      quantity: '0.1',
      price: '50000',
      realised_pnl: '0',
      fee: '0',
      liquidity: 'taker',
      liquidation_id: null,
      created_at: expect.any(String),
    });
    expect(mark!.data).toMatchObject({ symbol: 'BTC-PERP', price: '41000', previous_price: '50000' });
    expect(closing!.data).toMatchObject({ account_id: a, side: 'SELL', quantity: '0.1', price: '41000', realised_pnl: '-900', fee: null, liquidity: null, liquidation_id: liquidation!.data.liquidation_id });
    expect(liquidation!.data).toMatchObject({
      account_id: a,
      reason: 'mark_price',
      mode: 'full',
      fee: '0',
      shortfall: '0',
      positions: [{ symbol: 'BTC-PERP', quantity: '0.1', entry_price: '50000', mark_price: '41000' }],
      positions_left: [],
    });
    const ids = events.map((e) => e.id);
    expect(new Set(ids).size).toBe(5);
  });

  it('sends only the types asked for, and only the account asked for (market-wide events still come)', async () => {
    const [a, b] = [t.freshAccount(), t.freshAccount()];
    await Promise.all([t.deposit(a, '10000'), t.deposit(b, '10000')]);
    const onlyMarks = await Stream.open(base, '?types=mark');
    const onlyA = await Stream.open(base, `?account_id=${a}`);
    await t.trade(b, 'ETH-PERP', 'BUY', '1', '3000');
    await t.trade(a, 'ETH-PERP', 'BUY', '2', '3000');
    await t.mark('ETH-PERP', '3001');
    // A stream starts at the oldest transaction still running in the cluster, so an earlier test's
    // last mark may come too (other processes' transactions can hold that horizon back): ETH-PERP's only.
    const ours = (s: Stream) => s.events.filter((e) => e.type !== 'mark' || e.data.symbol === 'ETH-PERP');
    await until(() => ours(onlyMarks).length + ours(onlyA).length, { ok: (n) => n >= 3, timeoutMs: 10_000, what: 'the mark and the trade' });
    await Promise.all([onlyMarks.close(), onlyA.close()]);
    const [mark] = ours(onlyMarks);
    const seenByA = ours(onlyA);
    expect(onlyMarks.events.every((e) => e.type === 'mark')).toBe(true);
    expect(ours(onlyMarks)).toHaveLength(1);
    expect(mark!.data.price).toBe('3001');
    expect(seenByA.map((e) => [e.type, e.data.account_id ?? null])).toEqual([
      ['trade', a],
      ['mark', null],
    ]);
  });

  it("confines an account key to its own accounts' events", async () => {
    const [own, other] = [t.freshAccount(), t.freshAccount()];
    const created = await t.post('/admin/keys', { name: 'events-account', role: 'account', account_ids: [own] });
    expect(created.status).toBe(201);
    const forbidden = await Stream.open(base, `?account_id=${other}`, { key: created.body.key });
    expect(forbidden.status).toBe(403);
    const s = await Stream.open(base, '?types=trade', { key: created.body.key });
    await Promise.all([t.deposit(own, '1000'), t.deposit(other, '1000')]);
    await t.trade(other, 'BTC-PERP', 'BUY', '0.01', '50000');
    await t.trade(own, 'BTC-PERP', 'BUY', '0.01', '50000');
    await s.wait(1);
    // The other account's trade committed first: had it passed, it would be here already.
    await s.close();
    expect(s.events.map((e) => e.data.account_id)).toEqual([own]);
  });

  it('opens for every reading role and an account key', async () => {
    for (const role of ['operator', 'treasury', 'trading', 'reader'] as const) {
      const created = await t.post('/admin/keys', { name: `events-${role}`, role });
      const s = await Stream.open(base, '', { key: created.body.key });
      await s.close();
      expect([role, s.status]).toEqual([role, 200]);
    }
  });

  it('refuses a bad query, a bad Last-Event-ID and a missing key before streaming', async () => {
    expect((await Stream.open(base, '?types=trade,fills')).status).toBe(400);
    expect((await Stream.open(base, '', { lastEventId: 'yesterday' })).status).toBe(400);
    expect((await Stream.open(base, '', { key: null })).status).toBe(401);
  });

  it('resumes after Last-Event-ID with exactly the events missed, none twice', async () => {
    const a = t.freshAccount();
    await t.deposit(a, '100000');
    const first = await Stream.open(base, `?account_id=${a}&types=trade`);
    for (let i = 0; i < 3; i++) expect((await t.trade(a, 'ETH-PERP', 'BUY', '1', '3000')).status).toBe(200);
    const seen = await first.wait(3);
    await first.close();
    const missed: number[] = [];
    for (let i = 0; i < 4; i++) missed.push((await t.trade(a, 'ETH-PERP', 'SELL', '0.5', '3000')).body.trade_id);
    const resumed = await Stream.open(base, `?account_id=${a}&types=trade`, { lastEventId: seen[2]!.id });
    const got = await resumed.wait(4);
    await t.trade(a, 'ETH-PERP', 'SELL', '0.5', '3000'); // and it goes on live
    await resumed.wait(5);
    await resumed.close();
    expect(got.slice(0, 4).map((e) => e.data.trade_id)).toEqual(missed);
    expect(resumed.events).toHaveLength(5);
  });

  it('resumes 100,000 events back without loss', async () => {
    // Its own schema: the bulk rows below are ledger rows Redis never saw, which an engine starting on it would catch up.
    const bulk = await startTestEngine();
    try {
      const bulkBase = await bulk.listen();
      await bulk.mark('BTC-PERP', '50000');
      await bulk.deposit(1, '1000');
      const live = await Stream.open(bulkBase, '?types=trade');
      await bulk.trade(1, 'BTC-PERP', 'BUY', '0.001', '50000');
      const [before] = await live.wait(1);
      await live.close();
      // 100,000 trades committed at once, straight into the ledger (the engine's own booking would take minutes here).
      await bulk.db.sql`
        INSERT INTO ledger (account_id, seq, kind, symbol, side, quantity, price, realised_pnl, position_quantity, position_entry_price, balance)
        SELECT 10 + g, 1, 'TRADE', 'BTC-PERP', 'BUY', 1, 50000, 0, 1, 50000, 0 FROM generate_series(1, 100000) AS g`;
      const resumed = await Stream.open(bulkBase, '?types=trade', { lastEventId: before!.id });
      const got = await resumed.wait(100_000, 'trade', 60_000);
      await resumed.close();
      const ids = got.map((e) => e.data.account_id as number);
      expect(ids).toHaveLength(100_000);
      expect(new Set(ids).size).toBe(100_000);
      expect(ids[0]).toBe(11);
      expect(ids[ids.length - 1]).toBe(100_010);
    } finally {
      await bulk.close();
    }
  }, 90_000);

  it("carries every engine process's events on every process's stream", async () => {
    // A second engine process on the same stores (its own fixture would drop the schema on closing).
    const other = await startEngine(t.iso);
    try {
      const otherBase = await listen(other);
      const here = await Stream.open(base, '?types=trade,mark');
      const there = await Stream.open(otherBase, '?types=trade,mark');
      const a = t.freshAccount();
      expect((await call(other.app, 'POST', `/accounts/${a}/deposit`, { amount: '1000' })).status).toBe(200);
      const booked = await call(other.app, 'POST', '/trade', { account_id: a, symbol: 'BTC-PERP', side: 'BUY', quantity: '0.01', price: '50000' });
      expect(booked.status).toBe(200);
      await t.mark('ETH-PERP', '3002');
      const [hereEvents, thereEvents] = await Promise.all([here.wait(2), there.wait(2)]);
      await Promise.all([here.close(), there.close()]);
      for (const events of [hereEvents, thereEvents]) {
        expect(events.map((e) => [e.type, e.data.trade_id ?? e.data.price])).toEqual([
          ['trade', booked.body.trade_id],
          ['mark', '3002'],
        ]);
      }
      expect(hereEvents.map((e) => e.id)).toEqual(thereEvents.map((e) => e.id));
    } finally {
      await other.close();
    }
  });

  it('drops a consumer that stops reading, and keeps serving the others', async () => {
    const slow = await startTestEngine({ env: { EVENTS_STALL_MS: '300' } });
    try {
      const slowBase = await slow.listen();
      await slow.mark('BTC-PERP', '50000');
      const reading = await Stream.open(slowBase, '?types=trade');
      // A client that asks for the stream and then never reads from its socket.
      const stalled = connect(Number(new URL(slowBase).port), '127.0.0.1');
      stalled.on('error', () => undefined);
      stalled.write(`GET /events?types=trade HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${ADMIN_KEY}\r\n\r\n`);
      stalled.pause();
      await until(() => slow.engine.events.subscribers, { ok: (n) => n === 2, what: 'both consumers subscribed' });
      // Far more than the socket buffers hold (about 250 bytes an event), straight into the ledger.
      await slow.db.sql`
        INSERT INTO ledger (account_id, seq, kind, symbol, side, quantity, price, realised_pnl, position_quantity, position_entry_price, balance)
        SELECT 10 + g, 1, 'TRADE', 'BTC-PERP', 'BUY', 1, 50000, 0, 1, 50000, 0 FROM generate_series(1, 60000) AS g`;
      // Its socket fills, stays full for EVENTS_STALL_MS, and the engine lets it go (a paused client does not see the close).
      await until(() => slow.engine.events.subscribers, { ok: (n) => n === 1, timeoutMs: 15_000, what: 'the stalled consumer dropped' });
      stalled.destroy();
      await reading.wait(60_000, 'trade', 30_000);
      await slow.deposit(1, '1000');
      const live = await slow.trade(1, 'BTC-PERP', 'BUY', '0.01', '50000');
      await until(() => reading.events.some((e) => e.data.trade_id === live.body.trade_id), { ok: Boolean, timeoutMs: 5000, what: 'the live trade' });
      await reading.close();
    } finally {
      await slow.close();
    }
  }, 60_000);

  it('ends open streams when the engine shuts down, without waiting for them', async () => {
    const other = await startEngine(t.iso);
    const s = await Stream.open(await listen(other));
    const started = performance.now();
    await other.close();
    expect(performance.now() - started).toBeLessThan(3000);
    await s.close();
  });
});
