/**
 * `margin_call` events on GET /events, against real Redis and PostgreSQL
 * over a real socket: an account whose status gets worse through a tick, a
 * trade or a funding payment; none for a tick that crosses nothing; accounts
 * holding several symbols and positions in tiered markets; the filters, an
 * account key's confinement, and resuming after an id.
 *
 * Rates are the defaults (initial 20 %, maintenance 10 %) unless a market
 * sets its own. Each test trades a symbol of its own.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, startTestEngine, type EngineFixture } from '../helpers/engine.js';
import { until } from '../helpers/until.js';

interface Received {
  readonly id: string;
  readonly type: string;
  readonly data: any;
}

/** A minimal SSE client (one connection of its own). */
class Stream {
  readonly events: Received[] = [];
  status = 0;
  private request: http.ClientRequest | null = null;

  static open(base: string, query = '', options: { key?: string; lastEventId?: string } = {}): Promise<Stream> {
    const s = new Stream();
    const headers: http.OutgoingHttpHeaders = { authorization: `Bearer ${options.key ?? ADMIN_KEY}` };
    if (options.lastEventId) headers['last-event-id'] = options.lastEventId;
    return new Promise((resolve, reject) => {
      s.request = http.get(`${base}/events${query}`, { headers, agent: false }, (res) => {
        s.status = res.statusCode ?? 0;
        res.setEncoding('utf8');
        let buffer = '';
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

  async wait(n: number, type?: string): Promise<Received[]> {
    const of = () => (type === undefined ? this.events : this.events.filter((e) => e.type === type));
    await until(() => of().length, { ok: (k) => k >= n, timeoutMs: 10_000, what: `${n} ${type ?? ''} events` });
    return of();
  }

  close(): void {
    this.request?.destroy();
  }
}

let t: EngineFixture;
let base: string;

/**
 * A stream starts at the oldest transaction still running anywhere in the
 * cluster (other test files' included), so it may also carry a few events
 * committed just before it opened: each test looks at its own symbol's.
 */
const about = (symbol: string, events: readonly Received[]) => events.filter((e) => e.data.symbol === symbol || e.data.marks?.[symbol] !== undefined);

beforeAll(async () => {
  t = await startTestEngine();
  base = await t.listen();
});

afterAll(async () => {
  await t?.close();
});

const ok = (res: { status: number; body: any }) => {
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
};

/** A fresh account with `cash`, long (or short) `quantity` of `symbol` at `price`. */
async function holder(symbol: string, cash: string, side: 'BUY' | 'SELL', quantity: string, price: string): Promise<number> {
  const a = t.freshAccount();
  await t.deposit(a, cash);
  ok(await t.trade(a, symbol, side, quantity, price));
  return a;
}

/** The margin calls stored for these accounts (the table behind the events). */
const storedCalls = (accounts: number[]) =>
  t.db.sql<{ account_id: string; status: string; cause: string }[]>`
    SELECT account_id::text, status, cause FROM margin_calls WHERE account_id = ANY(${accounts}::bigint[]) ORDER BY margin_call_id`;

describe('margin_call events', () => {
  it('a tick that takes one account into margin call and another under maintenance: both, before the liquidation', async () => {
    await t.mark('MC1-PERP', '50000');
    // a: 1 long at 50000 on 14000: equity m − 36000; initial 0.2·m (threshold 45000), maintenance 0.1·m (40000).
    // b: 1 long at 50000 on 12000: equity m − 38000; initial threshold 47500, maintenance 42222.2…
    const a = await holder('MC1-PERP', '14000', 'BUY', '1', '50000');
    const b = await holder('MC1-PERP', '12000', 'BUY', '1', '50000');
    const s = await Stream.open(base, '?types=mark,margin_call,liquidation');
    // At 42000: a has equity 6000 < initial 8400, ≥ maintenance 4200: margin call; b has 4000 < 4200: liquidatable.
    expect((await t.mark('MC1-PERP', '42000')).liquidated).toEqual([b]);
    await s.wait(4);
    s.close();
    const all = s.events.filter((e) => e.type !== 'mark' || e.data.symbol === 'MC1-PERP');
    const events = all.slice(all.findIndex((e) => e.type === 'mark' && e.data.price === '42000'));
    expect(events.map((e) => [e.type, e.data.account_id ?? null])).toEqual([
      ['mark', null],
      ['margin_call', a],
      ['margin_call', b],
      ['liquidation', b],
    ]);
    expect(events[1]!.data).toEqual({
      margin_call_id: expect.any(Number),
      account_id: a,
      status: 'margin_call',
      previous_status: 'healthy',
      equity: '6000',
      initial_margin: '8400',
      maintenance_margin: '4200',
      marks: { 'MC1-PERP': '42000' },
      cause: 'tick',
      symbol: 'MC1-PERP',
      funding_id: null,
      created_at: expect.any(String),
    });
    expect(events[2]!.data).toMatchObject({ status: 'liquidatable', previous_status: 'healthy', equity: '4000', initial_margin: '8400', maintenance_margin: '4200' });
    // Ids increase in stream order.
    const ids = events.map((e) => e.id);
    expect(new Set(ids).size).toBe(4);
  });

  it('no event for a tick that crosses nothing, nor for one that leaves an account in margin call; one for each step worse', async () => {
    await t.mark('MC2-PERP', '50000');
    const a = await holder('MC2-PERP', '14000', 'BUY', '1', '50000'); // initial threshold 45000, maintenance 40000
    const s = await Stream.open(base, `?types=margin_call&account_id=${a}`);
    await t.mark('MC2-PERP', '46000'); // healthy → healthy
    await t.mark('MC2-PERP', '45000'); // exactly at initial margin: still healthy
    await t.mark('MC2-PERP', '44000'); // → margin_call
    await t.mark('MC2-PERP', '44500'); // margin_call → margin_call
    await t.mark('MC2-PERP', '43000'); // margin_call → margin_call
    await t.mark('MC2-PERP', '46000'); // → healthy
    await t.mark('MC2-PERP', '44999'); // → margin_call again
    expect((await t.mark('MC2-PERP', '39999')).liquidated).toEqual([a]); // → liquidatable
    const events = await s.wait(3);
    s.close();
    expect(events.map((e) => [e.data.marks['MC2-PERP'], e.data.previous_status, e.data.status])).toEqual([
      ['44000', 'healthy', 'margin_call'],
      ['44999', 'healthy', 'margin_call'],
      ['39999', 'margin_call', 'liquidatable'],
    ]);
    expect((await storedCalls([a])).map((r) => r.status)).toEqual(['margin_call', 'margin_call', 'liquidatable']);
  });

  it('a short: a rising mark', async () => {
    await t.mark('MC3-PERP', '3000');
    // 1 short at 3000 on 1000: equity 4000 − m; initial 0.2·m: threshold 3333.33…; maintenance 0.1·m: 3636.36…
    const a = await holder('MC3-PERP', '1000', 'SELL', '1', '3000');
    const s = await Stream.open(base, `?types=margin_call&account_id=${a}`);
    await t.mark('MC3-PERP', '3333.33'); // equity 666.67 ≥ 666.666: healthy
    await t.mark('MC3-PERP', '3333.34'); // equity 666.66 < 666.668: margin call
    const [call] = await s.wait(1);
    s.close();
    expect(call!.data).toMatchObject({ status: 'margin_call', equity: '666.66', initial_margin: '666.668', maintenance_margin: '333.334', marks: { 'MC3-PERP': '3333.34' } });
  });

  it('an account holding several symbols: found through the tick on either, with every mark', async () => {
    await t.mark('MC4A-PERP', '100');
    await t.mark('MC4B-PERP', '200');
    // 10 long A at 100, 5 long B at 200, on 500: equity 500 + 10·(a − 100) + 5·(b − 200); initial 0.2·(10a + 5b) = 400 at the start.
    const a = t.freshAccount();
    await t.deposit(a, '500');
    ok(await t.trade(a, 'MC4A-PERP', 'BUY', '10', '100'));
    ok(await t.trade(a, 'MC4B-PERP', 'BUY', '5', '200'));
    const s = await Stream.open(base, `?types=margin_call&account_id=${a}`);
    await t.mark('MC4A-PERP', '95'); // equity 450, initial 390: healthy
    await t.mark('MC4B-PERP', '190'); // equity 400, initial 380: healthy
    await t.mark('MC4A-PERP', '92'); // equity 370, initial 374: margin call (maintenance 187)
    const [call] = await s.wait(1);
    s.close();
    expect(call!.data).toMatchObject({
      status: 'margin_call',
      previous_status: 'healthy',
      equity: '370',
      initial_margin: '374',
      maintenance_margin: '187',
      marks: { 'MC4A-PERP': '92', 'MC4B-PERP': '190' },
      cause: 'tick',
      symbol: 'MC4A-PERP',
    });
    expect(await storedCalls([a])).toHaveLength(1);
  });

  it('a tiered market: a position in its first tier and one beyond it', async () => {
    // Tier 1 up to 100,000 notional at 10 % / 5 %; above at 20 % / 10 % (amounts 10,000 and 5,000 off).
    ok(
      await t.put('/markets/MC5-PERP', {
        tiers: [
          { max_notional: '100000', initial_margin_rate: '0.1', maintenance_margin_rate: '0.05' },
          { max_notional: null, initial_margin_rate: '0.2', maintenance_margin_rate: '0.1' },
        ],
      }),
    );
    await t.mark('MC5-PERP', '1000');
    // small: 10 long at 1000 on 1500 (notional 10,000, tier 1): equity 10m − 8500, initial m: threshold 944.44…
    const small = await holder('MC5-PERP', '1500', 'BUY', '10', '1000');
    // large: 200 long at 1000 on 40000 (notional 200,000, tier 2): equity 200m − 160000, initial 40m − 10000: threshold 937.5
    const large = await holder('MC5-PERP', '40000', 'BUY', '200', '1000');
    const s = await Stream.open(base, '?types=margin_call');
    await t.mark('MC5-PERP', '950'); // small: 1000 ≥ 950; large: 30000 ≥ 28000: both healthy
    await t.mark('MC5-PERP', '940'); // small: 900 < 940: margin call; large: 28000 ≥ 27600: healthy
    await t.mark('MC5-PERP', '930'); // large: 26000 < 27200: margin call (maintenance 13600)
    await until(() => about('MC5-PERP', s.events).length, { ok: (n) => n >= 2, timeoutMs: 10_000, what: 'two margin calls' });
    s.close();
    const events = about('MC5-PERP', s.events);
    expect(events.map((e) => [e.data.account_id, e.data.marks['MC5-PERP'], e.data.equity, e.data.initial_margin])).toEqual([
      [small, '940', '900', '940'],
      [large, '930', '26000', '27200'],
    ]);
  });

  it('a reduce-only trade at a bad price: the margin call commits with the trade', async () => {
    ok(await t.put('/markets/MC6-PERP', { trade_price_band: '0' }));
    await t.mark('MC6-PERP', '50000');
    // 2 long at 50000 on 22000. Selling 1 at 35000 realises −15000: balance 7000, 1 long at mark 50000:
    // equity 7000 < initial 10000, ≥ maintenance 5000.
    const a = await holder('MC6-PERP', '22000', 'BUY', '2', '50000');
    const s = await Stream.open(base, `?account_id=${a}`);
    const sold = ok(await t.trade(a, 'MC6-PERP', 'SELL', '1', '35000'));
    await s.wait(1, 'margin_call');
    s.close();
    const events = s.events.slice(s.events.findIndex((e) => e.data.trade_id === sold.trade_id));
    expect(events.map((e) => e.type)).toEqual(['trade', 'margin_call']);
    expect(events[0]!.data.trade_id).toBe(sold.trade_id);
    expect(events[1]!.data).toMatchObject({ status: 'margin_call', previous_status: 'healthy', equity: '7000', initial_margin: '10000', cause: 'trade', symbol: 'MC6-PERP' });
    // The same transaction as the trade's row.
    const [same] = await t.db.sql<{ same: boolean }[]>`
      SELECT (SELECT xid FROM ledger WHERE account_id = ${a} AND kind = 'TRADE' ORDER BY seq DESC LIMIT 1) =
             (SELECT xid FROM margin_calls WHERE account_id = ${a}) AS same`;
    expect(same!.same).toBe(true);
  });

  it('a funding payment that takes a payer below initial margin', async () => {
    await t.mark('MC7-PERP', '1000');
    // payer: 10 long at 1000 on 2010: equity 2010, initial 2000. At rate 0.002 it pays 10·1000·0.002 = 20: equity 1990.
    const payer = await holder('MC7-PERP', '2010', 'BUY', '10', '1000');
    const receiver = await holder('MC7-PERP', '100000', 'SELL', '10', '1000');
    const s = await Stream.open(base, '?types=margin_call,funding');
    ok(await t.post('/funding', { symbol: 'MC7-PERP', rate: '0.002', funding_id: 'mc7-1' }));
    await s.wait(1, 'funding');
    s.close();
    const events = about('MC7-PERP', s.events);
    expect(events.map((e) => [e.type, e.data.account_id ?? null])).toEqual([
      ['margin_call', payer],
      ['funding', null],
    ]);
    expect(events[0]!.data).toMatchObject({ status: 'margin_call', equity: '1990', initial_margin: '2000', cause: 'funding', funding_id: 'mc7-1' });
    expect(await storedCalls([receiver])).toEqual([]);
  });

  it("filters by type and account, confines an account key to its own accounts' calls, and resumes after an id", async () => {
    await t.mark('MC8-PERP', '50000');
    const a = await holder('MC8-PERP', '14000', 'BUY', '1', '50000'); // initial threshold 45000
    const b = await holder('MC8-PERP', '13000', 'BUY', '1', '50000'); // initial threshold 46250
    const key = await t.post('/admin/keys', { name: 'mc-account', role: 'account', account_ids: [a] });
    expect(key.status).toBe(201);
    const created = key.body;
    const own = await Stream.open(base, '?types=margin_call', { key: created.key });
    const onlyB = await Stream.open(base, `?types=margin_call&account_id=${b}`);
    const onlyTrades = await Stream.open(base, `?types=trade&account_id=${a}`);
    const all = await Stream.open(base, '?types=mark,margin_call');
    await t.mark('MC8-PERP', '44000');
    await until(() => about('MC8-PERP', all.events).length, { ok: (n) => n >= 3, timeoutMs: 10_000, what: 'the mark and two calls' });
    const markEvent = about('MC8-PERP', all.events).find((e) => e.type === 'mark' && e.data.price === '44000');
    expect(markEvent).toBeDefined();
    const [seenByOwn] = await own.wait(1);
    const [seenByB] = await onlyB.wait(1);
    // Resume after the mark's id: exactly the two calls that followed it.
    const resumed = await Stream.open(base, '?types=margin_call', { lastEventId: markEvent!.id });
    const again = await resumed.wait(2);
    await t.mark('MC8-PERP', '50000');
    await t.mark('MC8-PERP', '44001'); // both into margin call again: the live stream goes on
    await resumed.wait(4);
    for (const x of [own, onlyB, onlyTrades, all, resumed]) x.close();
    expect(seenByOwn!.data.account_id).toBe(a);
    expect(own.events.every((e) => e.data.account_id === a)).toBe(true);
    expect(seenByB!.data.account_id).toBe(b);
    expect(onlyB.events.every((e) => e.data.account_id === b)).toBe(true);
    expect(onlyTrades.events.every((e) => e.type === 'trade')).toBe(true);
    expect(again.slice(0, 2).map((e) => e.data.account_id)).toEqual([a, b]);
    const afterMark = about('MC8-PERP', all.events);
    const at = afterMark.indexOf(markEvent!);
    expect(again.slice(0, 2).map((e) => e.id)).toEqual(afterMark.slice(at + 1, at + 3).map((e) => e.id));
  });
});
