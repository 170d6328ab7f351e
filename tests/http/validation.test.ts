/**
 * Bad input gets a clear error and changes nothing.
 *
 * Every rejected request is checked the same way: status 400, the one error
 * shape `{success: false, error: {code: 'VALIDATION_ERROR', message, details:
 * {fields: [{field, message}]}}}` naming exactly the offending field(s), and a
 * snapshot of everything the engine stores (ledger rows and mark prices in
 * PostgreSQL, the keys under this run's Redis prefix, the marks hash, and
 * account 1 as GET /positions/1 sees it) taken before and after is unchanged.
 * Each bad request is a variation of a request that would otherwise succeed
 * on the funded account 1, so "nothing stored" means something.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { D } from '../../src/domain/decimal.js';
import { call, listMarkets, startTestEngine, type EngineFixture } from '../helpers/engine.js';

let t: EngineFixture;

const FUNDED = 1;
const NEVER_SEEN = 999_999;
const NEVER_FUNDED = 999_998;
/** 32 characters using every allowed character class. */
const LONGEST_SYMBOL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ-_/012';

beforeAll(async () => {
  t = await startTestEngine();
  expect(await t.deposit(FUNDED, '1000000')).toEqual({ account_id: FUNDED, balance: '1000000' });
  // The markets the well-formed trades book on (so a case fails only for the one thing it breaks).
  await listMarkets(t.app, 'BTC-PERP', LONGEST_SYMBOL);
});

afterAll(async () => {
  await t?.close();
});

type Method = 'GET' | 'POST';
type Json = Record<string, unknown>;

const post = (url: string, body?: unknown) => t.post(url, body);
const get = (url: string) => t.get(url);

// ---- what "nothing stored" means, checked identically for every case

interface StoredState {
  readonly ledgerRows: number;
  readonly markRows: { symbol: string; price: string; version: string }[];
  readonly redisKeys: string[];
  readonly redisMarks: Record<string, string>;
  readonly account1: unknown;
}

async function redisKeys(): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await t.db.redis.scan(cursor, 'MATCH', `${t.keys.prefix}:*`, 'COUNT', 1000);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== '0');
  return keys.sort();
}

async function storedState(): Promise<StoredState> {
  const [ledger] = await t.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ledger`;
  const marks = await t.db.sql<{ symbol: string; price: string; version: string }[]>`
    SELECT symbol, price::text AS price, version::text AS version FROM mark_prices ORDER BY symbol`;
  const account1 = await get(`/positions/${FUNDED}`);
  expect(account1.status).toBe(200);
  return {
    ledgerRows: ledger!.n,
    markRows: marks.map((m) => ({ symbol: m.symbol, price: m.price, version: m.version })),
    redisKeys: await redisKeys(),
    redisMarks: await t.db.redis.hgetall(t.keys.marks),
    account1: account1.body,
  };
}

/** Sends `body` (a string goes out raw as application/json) and asserts the error and that nothing changed. */
async function expectRejected(
  method: Method,
  url: string,
  body: unknown,
  expected: { status: number; code: string },
): Promise<{ code: string; message: string; details?: Json }> {
  const before = await storedState();
  const res = await call(t.app, method, url, body);
  expect(res.status).toBe(expected.status);
  expect(res.body).toMatchObject({ success: false, error: { code: expected.code, message: expect.stringMatching(/\S/) } });
  expect(Object.keys(res.body as Json).sort()).toEqual(['error', 'success']);
  expect(['code', 'details', 'message']).toEqual(expect.arrayContaining(Object.keys(res.body.error as Json)));
  expect(await storedState()).toEqual(before);
  return res.body.error;
}

/**
 * 400 VALIDATION_ERROR whose details.fields name exactly `fields` (each entry
 * a {field, message} with a non-empty message), and nothing stored.
 */
async function expectValidationError(method: Method, url: string, body: unknown, fields: string[]): Promise<{ field: string; message: string }[]> {
  const error = await expectRejected(method, url, body, { status: 400, code: 'VALIDATION_ERROR' });
  expect(error.details).toEqual({ fields: expect.any(Array) });
  const reported = (error.details as { fields: { field: string; message: string }[] }).fields;
  expect(reported.length).toBeGreaterThan(0);
  for (const entry of reported) expect(entry).toEqual({ field: expect.any(String), message: expect.stringMatching(/\S/) });
  expect([...new Set(reported.map((f) => f.field))].sort()).toEqual([...fields].sort());
  return reported;
}

// ---- a trade that would be booked if it were not for the one thing each case breaks

const baseTrade = { account_id: FUNDED, symbol: 'BTC-PERP', side: 'BUY', quantity: '0.1', price: '50000' } as const;
type TradeField = keyof typeof baseTrade | 'client_order_id';
const REQUIRED_TRADE_FIELDS = ['account_id', 'symbol', 'side', 'quantity', 'price'] as const;

const tradeWith = (field: TradeField, value: unknown): Json => ({ ...baseTrade, [field]: value });
const tradeWithout = (field: TradeField): Json => Object.fromEntries(Object.entries(baseTrade).filter(([k]) => k !== field));
/** The base trade as raw JSON text with `field` set to a number literal written exactly as given (no JS number in between). */
const rawTradeWith = (field: 'account_id' | 'quantity' | 'price', literal: string): string =>
  JSON.stringify(tradeWith(field, '@@')).replace('"@@"', literal);

const NINETEEN_DECIMALS = '0.1234567890123456789';
const EIGHTEEN_DECIMALS = '0.123456789012345678';

describe('POST /trade validation', () => {
  it('books the well-formed base trade every case below varies (control)', async () => {
    const before = (await t.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ledger`)[0]!.n;
    const res = await post('/trade', baseTrade);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ success: true, account_id: FUNDED, symbol: 'BTC-PERP', side: 'BUY', quantity: '0.1', price: '50000' });
    expect((await t.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ledger`)[0]!.n).toBe(before + 1);
  });

  describe('malformed or missing JSON body → 400 naming "body"', () => {
    it.each([
      ['truncated JSON', '{"account_id": 1,'],
      ['a missing value', '{"account_id": 1, "symbol": }'],
      ['single-quoted keys', "{'account_id': 1}"],
      ['a bare NaN literal', '{"account_id":1,"symbol":"BTC-PERP","side":"BUY","quantity":NaN,"price":50000}'],
      ['a bare Infinity literal', '{"account_id":1,"symbol":"BTC-PERP","side":"BUY","quantity":0.1,"price":Infinity}'],
      ['trailing garbage after the object', `${JSON.stringify(baseTrade)} x`],
      ['an empty body with a JSON content type', ''],
      ['a whitespace-only body', '   \n'],
      ['JSON null', 'null'],
      ['a JSON array', '[]'],
      ['a JSON string', '"trade"'],
      ['a JSON number', '42'],
    ])('rejects %s', async (_name, raw) => {
      await expectValidationError('POST', '/trade', raw, ['body']);
    });

    it('rejects a request with no body at all', async () => {
      await expectValidationError('POST', '/trade', undefined, ['body']);
    });

    it('rejects an empty object, naming every required field', async () => {
      await expectValidationError('POST', '/trade', {}, REQUIRED_TRADE_FIELDS.map((f) => `body.${f}`));
    });
  });

  describe('a missing required field → 400 naming it', () => {
    it.each(REQUIRED_TRADE_FIELDS)('rejects a trade without %s', async (field) => {
      await expectValidationError('POST', '/trade', tradeWithout(field), [`body.${field}`]);
    });
  });

  describe('a field of the wrong type → 400 naming it', () => {
    it.each<[TradeField, unknown]>([
      ['account_id', '1'],
      ['account_id', true],
      ['account_id', null],
      ['account_id', [1]],
      ['symbol', 123],
      ['symbol', null],
      ['side', 1],
      ['side', ['BUY']],
      ['quantity', true],
      ['quantity', null],
      ['quantity', {}],
      ['quantity', [0.1]],
      ['price', false],
      ['price', { value: '50000' }],
      ['client_order_id', 12345],
      ['client_order_id', true],
    ])('rejects %s = %j', async (field, value) => {
      await expectValidationError('POST', '/trade', tradeWith(field, value), [`body.${field}`]);
    });
  });

  describe('a bad account_id → 400 naming body.account_id', () => {
    it.each([0, -1, 1.5, -0.5, 2 ** 53])('rejects account_id %s', async (value) => {
      await expectValidationError('POST', '/trade', tradeWith('account_id', value), ['body.account_id']);
    });

    it.each(['9007199254740993', '1e400', '1.0000000000000000001'])('rejects the raw JSON literal account_id %s (beyond a safe integer)', async (literal) => {
      await expectValidationError('POST', '/trade', rawTradeWith('account_id', literal), ['body.account_id']);
    });
  });

  const AMOUNT_FIELDS = ['quantity', 'price'] as const;
  /** Every (field, value) pair as a [field, value] row, so `%s` names read unquoted. */
  const eachAmountField = <T>(values: T[]) => AMOUNT_FIELDS.flatMap((field) => values.map((value): [(typeof AMOUNT_FIELDS)[number], T] => [field, value]));

  describe('a non-positive quantity or price → 400 naming it', () => {
    it.each(eachAmountField<unknown>([0, -1, -0.5, '0', '-5', '0.000', '-0', '-0.1']))('rejects %s = %j', async (field, value) => {
      await expectValidationError('POST', '/trade', tradeWith(field, value), [`body.${field}`]);
    });

    it.each(eachAmountField(['-0', '0.0', '-1', '-1e400']))('rejects %s as the raw JSON literal %s', async (field, value) => {
      await expectValidationError('POST', '/trade', rawTradeWith(field, value), [`body.${field}`]);
    });
  });

  describe('NaN, Infinity, out-of-range and non-numeric text → 400 naming the field', () => {
    it.each(
      eachAmountField([
        'NaN',
        'Infinity',
        '-Infinity',
        '1e400',
        '1e20',
        '100000000000000000000',
        '',
        ' 1',
        '1 ',
        '1,5',
        '0x10',
        '1e',
        'abc',
        '+1',
      ]),
    )('rejects %s = %j', async (field, value) => {
      await expectValidationError('POST', '/trade', tradeWith(field, value), [`body.${field}`]);
    });

    it.each(eachAmountField(['1e400', '1e20', '123456789012345678901234567890']))(
      'rejects %s as the raw JSON literal %s',
      async (field, value) => {
        await expectValidationError('POST', '/trade', rawTradeWith(field, value), [`body.${field}`]);
      },
    );
  });

  describe('more than 18 decimal places → 400 naming the field', () => {
    it.each(eachAmountField([NINETEEN_DECIMALS, '1e-19', '50000.0000000000000000001']))('rejects %s = %j (a JSON string)', async (field, value) => {
      await expectValidationError('POST', '/trade', tradeWith(field, value), [`body.${field}`]);
    });

    it.each(eachAmountField([NINETEEN_DECIMALS, '1e-19', '50000.0000000000000000001']))(
      'rejects %s as the raw JSON number literal %s',
      async (field, value) => {
        await expectValidationError('POST', '/trade', rawTradeWith(field, value), [`body.${field}`]);
      },
    );
  });

  describe('a bad side → 400 naming body.side', () => {
    it.each(['buy', 'sell', 'Buy', 'HOLD', '', ' BUY', 'BUY '])('rejects side %j', async (value) => {
      await expectValidationError('POST', '/trade', tradeWith('side', value), ['body.side']);
    });
  });

  describe('a bad symbol → 400 naming body.symbol', () => {
    it.each([
      ['lowercase', 'btc-perp'],
      ['33 characters', 'A'.repeat(33)],
      ['an inner space', 'BTC PERP'],
      ['empty', ''],
      ['a dot', 'BTC.PERP'],
      ['a trailing newline', 'BTC-PERP\n'],
      ['a non-ASCII letter', 'BTC-PÉRP'],
    ])('rejects a symbol that is %s (%j)', async (_name, value) => {
      await expectValidationError('POST', '/trade', tradeWith('symbol', value), ['body.symbol']);
    });
  });

  describe('a bad client_order_id → 400 naming body.client_order_id', () => {
    it.each([
      ['empty', ''],
      ['65 characters', 'x'.repeat(65)],
      ['containing a space', 'order 1'],
      ['containing a tab', 'order\t1'],
      ['non-ASCII', 'ordré-1'],
    ])('rejects a client_order_id that is %s', async (_name, value) => {
      await expectValidationError('POST', '/trade', tradeWith('client_order_id', value), ['body.client_order_id']);
    });
  });

  describe('an unknown extra field → 400 (the schema is strict)', () => {
    it('rejects an unknown field and names it', async () => {
      await expectValidationError('POST', '/trade', { ...baseTrade, leverage: 10 }, ['body.leverage']);
    });

    it('names every unknown field alongside a bad known one', async () => {
      const fields = await expectValidationError('POST', '/trade', { ...baseTrade, quantity: '0', leverage: 10, reduce_only: true }, [
        'body.leverage',
        'body.reduce_only',
        'body.quantity',
      ]);
      expect(fields.find((f) => f.field === 'body.leverage')?.message).toBe('is not a known field');
    });
  });

  describe('values exactly at the limits are accepted', () => {
    it.each<[string, Json]>([
      ['a 32-character symbol using every allowed character class', { ...baseTrade, symbol: LONGEST_SYMBOL }],
      ['a 64-character client_order_id of printable ASCII', { ...baseTrade, client_order_id: '!'.repeat(32) + '~'.repeat(32) }],
      ['an 18-decimal quantity string', { ...baseTrade, quantity: EIGHTEEN_DECIMALS }],
      ['an 18-decimal price string', { ...baseTrade, price: '50000.000000000000000001' }],
    ])('books a trade with %s', async (_name, body) => {
      const res = await post('/trade', body);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ success: true, account_id: FUNDED, symbol: body.symbol, quantity: body.quantity, price: body.price });
    });

    it('treats the largest safe integer as a valid account id (unfunded: 422, not 400)', async () => {
      await expectRejected('POST', '/trade', { ...baseTrade, account_id: Number.MAX_SAFE_INTEGER }, { status: 422, code: 'INSUFFICIENT_MARGIN' });
    });

    it('books an 18-decimal raw JSON number literal exactly, not as a rounded double', async () => {
      const res = await post('/trade', rawTradeWith('quantity', EIGHTEEN_DECIMALS));
      expect(res.status).toBe(200);
      expect(res.body.quantity).toBe(EIGHTEEN_DECIMALS);
      const [row] = await t.db.sql<{ quantity: string }[]>`SELECT quantity::text AS quantity FROM trades WHERE trade_id = ${res.body.trade_id}`;
      expect(row!.quantity).toBe(EIGHTEEN_DECIMALS);
    });
  });
});

describe('validation messages say what is wrong', () => {
  const messageFor = async (body: unknown, field: string) =>
    (await expectValidationError('POST', '/trade', body, [field])).find((f) => f.field === field)!.message;
  const withoutQuantity = Object.fromEntries(Object.entries(baseTrade).filter(([k]) => k !== 'quantity'));

  it('says a missing field is required', async () => {
    expect(await messageFor(withoutQuantity, 'body.quantity')).toBe('is required');
  });

  it('says an amount must be a decimal number or string', async () => {
    expect(await messageFor({ ...baseTrade, quantity: true }, 'body.quantity')).toBe('must be a decimal number or a decimal string');
  });

  it('gives the account id range for an integer too large to be exact', async () => {
    const raw = JSON.stringify({ ...baseTrade, account_id: 0 }).replace('"account_id":0', '"account_id":9007199254740993');
    expect(await messageFor(raw, 'body.account_id')).toBe('must be a JSON integer from 1 to 9007199254740991');
  });
});

describe('POST /accounts/:account_id/deposit and /withdraw validation', () => {
  const CASH_ROUTES = ['deposit', 'withdraw'] as const;

  it.each(CASH_ROUTES)('accepts a well-formed %s on account 1 (control)', async (route) => {
    const res = await post(`/accounts/${FUNDED}/${route}`, { amount: '1' });
    expect(res).toMatchObject({ status: 200, body: { account_id: FUNDED, balance: expect.any(String) } });
  });

  describe('a bad amount → 400 naming body.amount', () => {
    const badAmounts: [string, unknown][] = [
      ['zero', { amount: 0 }],
      ['zero as a string', { amount: '0' }],
      ['negative', { amount: -1 }],
      ['negative as a string', { amount: '-100' }],
      ['non-numeric text', { amount: 'abc' }],
      ['NaN as a string', { amount: 'NaN' }],
      ['Infinity as a string', { amount: 'Infinity' }],
      ['1e400 as a string', { amount: '1e400' }],
      ['19 decimals as a string', { amount: NINETEEN_DECIMALS }],
      ['19 decimals as a raw JSON number literal', `{"amount": ${NINETEEN_DECIMALS}}`],
      ['a boolean', { amount: true }],
      ['null', { amount: null }],
      ['missing', {}],
    ];
    it.each(CASH_ROUTES.flatMap((route) => badAmounts.map(([name, body]): [string, string, unknown] => [route, name, body])))(
      '%s rejects an amount that is %s',
      async (route, _name, body) => {
        await expectValidationError('POST', `/accounts/${FUNDED}/${route}`, body, ['body.amount']);
      },
    );

    it.each(CASH_ROUTES)('%s rejects a body with an unknown field, naming it', async (route) => {
      await expectValidationError('POST', `/accounts/${FUNDED}/${route}`, { amount: '1', currency: 'USDT' }, ['body.currency']);
    });

    it.each(CASH_ROUTES)('%s rejects malformed JSON', async (route) => {
      await expectValidationError('POST', `/accounts/${FUNDED}/${route}`, '{"amount": ', ['body']);
    });
  });

  describe('a bad account id in the path → 400 naming params.account_id', () => {
    const badIds = ['0', 'abc', '-1', '1.5', '01', '1e3', '9007199254740992', '99999999999999999'];
    it.each(CASH_ROUTES.flatMap((route) => badIds.map((id) => `/accounts/${id}/${route}`)))('rejects POST %s', async (url) => {
      await expectValidationError('POST', url, { amount: '1' }, ['params.account_id']);
    });
  });
});

describe('POST /mark-price validation', () => {
  const baseMark = { symbol: 'VALIDATION-MARK', price: '100' };

  it('records a well-formed mark price (control)', async () => {
    expect(await post('/mark-price', { symbol: 'VALIDATION-CONTROL', price: '100' })).toMatchObject({
      status: 200,
      body: { symbol: 'VALIDATION-CONTROL', price: '100', liquidated: [] },
    });
  });

  it.each(['validation-mark', 'M'.repeat(33), 'BTC PERP', '', 'BTC.PERP', 42, null])('rejects symbol %j, naming body.symbol', async (symbol) => {
    await expectValidationError('POST', '/mark-price', { ...baseMark, symbol }, ['body.symbol']);
  });

  it.each([0, -1, '0', '-5', 'abc', 'NaN', 'Infinity', '1e400', NINETEEN_DECIMALS, true, null])('rejects price %j, naming body.price', async (price) => {
    await expectValidationError('POST', '/mark-price', { ...baseMark, price }, ['body.price']);
  });

  it('rejects a 19-decimal raw JSON number literal price, naming body.price', async () => {
    await expectValidationError('POST', '/mark-price', `{"symbol": "VALIDATION-MARK", "price": ${NINETEEN_DECIMALS}}`, ['body.price']);
  });

  it('rejects a missing symbol and price, naming both', async () => {
    await expectValidationError('POST', '/mark-price', {}, ['body.symbol', 'body.price']);
  });

  it('rejects an unknown field, naming it', async () => {
    await expectValidationError('POST', '/mark-price', { ...baseMark, source: 'binance' }, ['body.source']);
  });
});

describe('GET /trades/:account_id and /positions/:account_id validation', () => {
  it.each(['?limit=1', '?limit=1000', '', '?limit=10&cursor=1'])('accepts GET /trades/1%s (control)', async (query) => {
    const res = await get(`/trades/${FUNDED}${query}`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ trades: expect.any(Array), next_cursor: expect.toSatisfy((c: unknown) => c === null || typeof c === 'string') });
  });

  it.each([
    ['limit=0', 'querystring.limit'],
    ['limit=1001', 'querystring.limit'],
    ['limit=abc', 'querystring.limit'],
    ['limit=-1', 'querystring.limit'],
    ['limit=1.5', 'querystring.limit'],
    ['limit=', 'querystring.limit'],
    ['limit=99999999', 'querystring.limit'],
    ['limit=1&limit=2', 'querystring.limit'],
    ['cursor=xyz', 'querystring.cursor'],
    ['cursor=0', 'querystring.cursor'],
    ['cursor=-1', 'querystring.cursor'],
    ['cursor=1.5', 'querystring.cursor'],
  ])('rejects GET /trades/1?%s, naming %s', async (query, field) => {
    await expectValidationError('GET', `/trades/${FUNDED}?${query}`, undefined, [field]);
  });

  it('rejects an unknown query parameter, naming it', async () => {
    await expectValidationError('GET', `/trades/${FUNDED}?page=2`, undefined, ['querystring.page']);
  });

  it.each(['0', 'abc', '-1', '1.5', '9007199254740992'])('rejects account id %s in GET /positions/:id and GET /trades/:id, naming params.account_id', async (id) => {
    await expectValidationError('GET', `/positions/${id}`, undefined, ['params.account_id']);
    await expectValidationError('GET', `/trades/${id}`, undefined, ['params.account_id']);
  });
});

describe('amounts at the 18-decimal edge are stored exactly', () => {
  const balanceOf = async (id: number) => {
    const res = await get(`/positions/${id}`);
    expect(res.status).toBe(200);
    return new D(res.body.balance as string);
  };
  const lastCashAmount = async (id: number) =>
    (await t.db.sql<{ amount: string }[]>`SELECT amount::text AS amount FROM cash_movements WHERE account_id = ${id} ORDER BY seq DESC LIMIT 1`)[0]!
      .amount;

  it.each<[string, unknown]>([
    ['a raw JSON number literal', `{"amount": ${EIGHTEEN_DECIMALS}}`],
    ['a JSON string', { amount: EIGHTEEN_DECIMALS }],
  ])('a deposit of 0.123456789012345678 given as %s raises the balance by exactly that', async (_name, body) => {
    const before = await balanceOf(FUNDED);
    const res = await post(`/accounts/${FUNDED}/deposit`, body);
    expect(res.status).toBe(200);
    expect(res.body.account_id).toBe(FUNDED);
    expect(new D(res.body.balance as string).minus(before).eq(EIGHTEEN_DECIMALS)).toBe(true);
    expect(res.body.balance).toBe(before.plus(EIGHTEEN_DECIMALS).toString());
    expect((await balanceOf(FUNDED)).eq(new D(res.body.balance as string))).toBe(true);
    expect(await lastCashAmount(FUNDED)).toBe(EIGHTEEN_DECIMALS);
  });

  it('a withdrawal of a raw 18-decimal literal lowers the balance by exactly that', async () => {
    const before = await balanceOf(FUNDED);
    const res = await post(`/accounts/${FUNDED}/withdraw`, `{"amount": ${EIGHTEEN_DECIMALS}}`);
    expect(res.status).toBe(200);
    expect(before.minus(new D(res.body.balance as string)).eq(EIGHTEEN_DECIMALS)).toBe(true);
    expect(await lastCashAmount(FUNDED)).toBe(EIGHTEEN_DECIMALS);
  });
});

describe('unknown accounts', () => {
  it.each([`/positions/${NEVER_SEEN}`, `/trades/${NEVER_SEEN}`])('GET %s → 404 ACCOUNT_NOT_FOUND', async (url) => {
    const error = await expectRejected('GET', url, undefined, { status: 404, code: 'ACCOUNT_NOT_FOUND' });
    expect(error.details).toEqual({ account_id: NEVER_SEEN });
  });

  it('POST /accounts/999999/withdraw → 404 ACCOUNT_NOT_FOUND and creates nothing', async () => {
    await expectRejected('POST', `/accounts/${NEVER_SEEN}/withdraw`, { amount: '1' }, { status: 404, code: 'ACCOUNT_NOT_FOUND' });
    expect((await get(`/positions/${NEVER_SEEN}`)).status).toBe(404);
  });

  it('POST /trade on never-funded account 999998 → 422 INSUFFICIENT_MARGIN and creates nothing', async () => {
    const error = await expectRejected('POST', '/trade', { ...baseTrade, account_id: NEVER_FUNDED }, { status: 422, code: 'INSUFFICIENT_MARGIN' });
    expect(error.details).toEqual({ required: expect.any(String), available: expect.any(String) });
    expect(new D(error.details!.available as string).isZero()).toBe(true);
    expect(new D(error.details!.required as string).gt(0)).toBe(true);
    expect(await get(`/positions/${NEVER_FUNDED}`)).toMatchObject({ status: 404, body: { error: { code: 'ACCOUNT_NOT_FOUND' } } });
    expect(await get(`/trades/${NEVER_FUNDED}`)).toMatchObject({ status: 404, body: { error: { code: 'ACCOUNT_NOT_FOUND' } } });
    const [rows] = await t.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ledger WHERE account_id = ${NEVER_FUNDED}`;
    expect(rows!.n).toBe(0);
  });
});

describe('unknown routes', () => {
  it.each<[Method, string]>([
    ['GET', '/nope'],
    ['POST', '/trades/batch'],
    ['GET', '/trade'],
    ['POST', `/positions/${FUNDED}`],
    ['GET', `/accounts/${FUNDED}/deposit`],
  ])('%s %s → 404 NOT_FOUND in the same error shape', async (method, url) => {
    const error = await expectRejected(method, url, method === 'POST' ? { amount: '1' } : undefined, { status: 404, code: 'NOT_FOUND' });
    expect(error.message).toContain(url);
  });
});
