/**
 * Input hygiene: hostile or broken input gets a small answer in the one error
 * shape and changes nothing.
 *
 *  - A JSON body whose object repeats a key (compared as decoded text, at any
 *    depth, whichever parser takes it) is 400 VALIDATION_ERROR naming the key.
 *  - Errors the HTTP layer itself raises (400 broken request, 408 request
 *    timeout, 413 body too large, 415 media type, 431 headers too large) have
 *    the shape {success: false, error: {code, message, details?}}.
 *  - REQUEST_TIMEOUT_MS bounds how long a request may take to arrive;
 *    MAX_CONNECTIONS bounds open connections.
 *  - Client text echoed in an error is cut to at most 200 characters.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, call, startEngine, startTestEngine, type EngineFixture, type TestEngine } from '../helpers/engine.js';
import { listen, send } from '../helpers/http.js';
import { until } from '../helpers/until.js';

let t: EngineFixture;
let port: number;
let base: string;

const FUNDED = 1;
/** Never deposited to: a booked deposit would make it exist. */
const UNFUNDED = 2;

beforeAll(async () => {
  t = await startTestEngine();
  base = await t.listen();
  port = Number(new URL(base).port);
  await t.deposit(FUNDED, '1000');
});

afterAll(async () => {
  await t?.close();
});

const post = (url: string, body?: unknown) => t.post(url, body);

/** The one error shape, with `code`; returns the error. */
function expectErrorShape(body: unknown, code: string): { code: string; message: string; details?: Record<string, unknown> } {
  expect(body).toEqual({ success: false, error: expect.objectContaining({ code, message: expect.stringMatching(/\S/) }) });
  const error = (body as { error: Record<string, unknown> }).error;
  expect(['code', 'details', 'message']).toEqual(expect.arrayContaining(Object.keys(error)));
  return error as { code: string; message: string; details?: Record<string, unknown> };
}

const ledgerRows = async (accountId: number) =>
  (await t.db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ledger WHERE account_id = ${accountId}`)[0]!.n;

async function expectUnfundedUntouched(): Promise<void> {
  const res = await t.get(`/positions/${UNFUNDED}`);
  expect(res.status).toBe(404);
  expectErrorShape(res.body, 'ACCOUNT_NOT_FOUND');
  expect(await ledgerRows(UNFUNDED)).toBe(0);
}

// ---- raw sockets

interface RawAnswer {
  /** Everything the server sent before closing. */
  readonly raw: string;
  readonly status: number | null;
  readonly headers: Record<string, string>;
  readonly body: any;
  /** From the last write to the close of the connection. */
  readonly closedAfterMs: number;
  /** From the first write to the close of the connection. */
  readonly sinceFirstWriteMs: number;
}

/**
 * Opens a connection, writes `chunks` (a number: pause that many ms), then
 * waits for the server to close it (at most `waitMs`) and parses what came back.
 */
async function exchange(chunks: (string | number)[], to = port, waitMs = 5000): Promise<RawAnswer> {
  const socket = connect(to, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const received: Buffer[] = [];
  socket.on('data', (d: Buffer) => received.push(d));
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const firstWrite = performance.now();
  for (const chunk of chunks) {
    if (typeof chunk === 'number') await new Promise((r) => setTimeout(r, chunk));
    else if (!socket.destroyed) socket.write(chunk);
  }
  const lastWrite = performance.now();
  const timedOut = await Promise.race([closed.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), waitMs))]);
  const closedAt = performance.now();
  socket.destroy();
  if (timedOut) throw new Error(`the server did not close the connection within ${waitMs} ms; got ${Buffer.concat(received).toString().slice(0, 300)}`);
  return { ...parseResponse(Buffer.concat(received).toString('utf8')), closedAfterMs: closedAt - lastWrite, sinceFirstWriteMs: closedAt - firstWrite };
}

function parseResponse(raw: string): Omit<RawAnswer, 'closedAfterMs' | 'sinceFirstWriteMs'> {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) return { raw, status: null, headers: {}, body: undefined };
  const [statusLine, ...lines] = raw.slice(0, end).split('\r\n');
  const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  const text = raw.slice(end + 4);
  return { raw, status: Number(statusLine!.split(' ')[1]), headers, body: text ? JSON.parse(text) : undefined };
}

/** A well-formed raw HTTP/1.1 request. */
const request = (method: string, path: string, body?: string, extra = '') =>
  `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${ADMIN_KEY}\r\n${extra}` +
  (body === undefined ? '\r\n' : `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);

/** An answer written by the HTTP layer: the shape, JSON, and the connection closed. */
function expectRawError(answer: Omit<RawAnswer, 'closedAfterMs' | 'sinceFirstWriteMs'>, status: number, code: string): void {
  expect(answer.status).toBe(status);
  expect(answer.headers['content-type']).toMatch(/^application\/json/);
  expect(answer.headers.connection).toBe('close');
  expect(Number(answer.headers['content-length'])).toBe(Buffer.byteLength(JSON.stringify(answer.body)));
  expectErrorShape(answer.body, code);
}

describe('a JSON body with a duplicate key is 400 VALIDATION_ERROR', () => {
  it.each<[string, string, string]>([
    ['two different values', '{"amount": 5, "amount": 6}', 'amount'],
    ['two equal values', '{"amount": "5", "amount": "5"}', 'amount'],
    ['an escaped spelling of the key', '{"amount": 5, "\\u0061mount": 6}', 'amount'],
    ['16+ digit literals (the lossless-json path)', '{"amount": 5.0000000000000000001, "amount": 6}', 'amount'],
    ['16+ digit literals, equal values (lossless-json alone keeps one)', '{"amount": 0.123456789012345678, "amount": 0.123456789012345678}', 'amount'],
    ['a repeat in a nested object', '{"amount": 5, "meta": {"a": 1, "a": 2}}', 'a'],
    ['a repeat in an object inside an array', '{"amount": 5, "meta": [{"a": 1}, {"b": 1, "b": 1}]}', 'b'],
  ])('refuses a deposit with %s, naming the key, and books nothing', async (_name, body, key) => {
    const res = await post(`/accounts/${UNFUNDED}/deposit`, body);
    expect(res.status).toBe(400);
    const error = expectErrorShape(res.body, 'VALIDATION_ERROR');
    expect(error.message).toBe(`duplicate key "${key}" in the JSON body`);
    expect(error.details).toEqual({ fields: [{ field: expect.stringMatching(new RegExp(`^body\\..*${key}$`)), message: 'is given more than once' }] });
    await expectUnfundedUntouched();
  });

  it('names where a nested repeat is', async () => {
    const res = await post(`/accounts/${UNFUNDED}/deposit`, '{"amount": 5, "meta": [{"a": 1}, {"b": 1, "b": 1}]}');
    expect(res.body.error.details.fields[0].field).toBe('body.meta.1.b');
  });

  it('refuses a trade whose account_id appears twice (JSON.parse alone would book on the last one)', async () => {
    const before = await ledgerRows(FUNDED);
    const res = await post('/trade', `{"account_id":${UNFUNDED},"symbol":"BTC-PERP","side":"BUY","quantity":"0.1","price":"50000","account_id":${FUNDED}}`);
    expect(res.status).toBe(400);
    expect(expectErrorShape(res.body, 'VALIDATION_ERROR').message).toBe('duplicate key "account_id" in the JSON body');
    expect(await ledgerRows(FUNDED)).toBe(before);
    await expectUnfundedUntouched();
  });

  it('accepts the same key in sibling objects (the body then fails only on its unknown field)', async () => {
    const res = await post(`/accounts/${UNFUNDED}/deposit`, '{"amount": 5, "meta": [{"a": 1}, {"a": 2}]}');
    expect(res.status).toBe(400);
    expect(res.body.error.details).toEqual({ fields: [{ field: 'body.meta', message: 'is not a known field' }] });
    await expectUnfundedUntouched();
  });

  it('still books a body whose string values look like repeated keys (control)', async () => {
    const res = await post(`/accounts/${FUNDED}/deposit`, '{"amount": "1"}');
    expect(res.status).toBe(200);
    const tricky = await post('/trade', '{"account_id": 1, "symbol": "X\\"symbol\\": 1", "side": "BUY", "quantity": "1", "price": "1"}');
    // Refused for its symbol, not as a duplicate.
    expect(tricky.status).toBe(400);
    expect(tricky.body.error.details.fields.map((f: { field: string }) => f.field)).toEqual(['body.symbol']);
  });

  it('answers a duplicate over real HTTP the same way', async () => {
    const res = await send(base, 'POST', `/accounts/${UNFUNDED}/deposit`, '{"amount": 5, "amount": 6}');
    expect(res.status).toBe(400);
    expect(expectErrorShape(res.body, 'VALIDATION_ERROR').message).toBe('duplicate key "amount" in the JSON body');
    await expectUnfundedUntouched();
  });
});

describe('errors of the HTTP layer have the engine error shape', () => {
  it('413 PAYLOAD_TOO_LARGE for a body over 64 KiB', async () => {
    const big = JSON.stringify({ amount: '1', pad: 'x'.repeat(70 * 1024) });
    const injected = await post(`/accounts/${UNFUNDED}/deposit`, big);
    expect(injected.status).toBe(413);
    expectErrorShape(injected.body, 'PAYLOAD_TOO_LARGE');
    const real = await send(base, 'POST', `/accounts/${UNFUNDED}/deposit`, big);
    expect(real.status).toBe(413);
    expectErrorShape(real.body, 'PAYLOAD_TOO_LARGE');
    await expectUnfundedUntouched();
  });

  it('415 UNSUPPORTED_MEDIA_TYPE for a body that is not JSON', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: `/accounts/${UNFUNDED}/deposit`,
      headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/xml' },
      payload: '<amount>5</amount>',
    });
    expect(res.statusCode).toBe(415);
    expectErrorShape(JSON.parse(res.body), 'UNSUPPORTED_MEDIA_TYPE');
    await expectUnfundedUntouched();
  });

  it.each<[string, string]>([
    ['a garbage request line', 'GARBAGE\r\n\r\n'],
    ['an unknown method', 'FROB / HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['a header line without a colon', 'GET /health HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n'],
    ['a bad HTTP version', 'GET /health HTTP/9.9\r\nHost: x\r\n\r\n'],
    ['an invalid Content-Length', 'POST /trade HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n'],
    ['both Content-Length and chunked', 'POST /trade HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
  ])('400 BAD_REQUEST for %s, and the connection closed', async (_name, payload) => {
    const answer = await exchange([payload]);
    expectRawError(answer, 400, 'BAD_REQUEST');
    expect(answer.body.error.message).toMatch(/^malformed HTTP request/);
    expect(answer.closedAfterMs).toBeLessThan(1500);
  });

  it('431 HEADERS_TOO_LARGE for 20 KiB of headers, and the connection closed', async () => {
    const answer = await exchange([`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\n\r\n`]);
    expectRawError(answer, 431, 'HEADERS_TOO_LARGE');
    expect(answer.closedAfterMs).toBeLessThan(1500);
  });

  it('431 also for a flood of headers still arriving', async () => {
    const answer = await exchange([`GET /health HTTP/1.1\r\nHost: x\r\n`, ...Array.from({ length: 40 }, (_, i) => `X-H${i}: ${'b'.repeat(1000)}\r\n`)]);
    expectRawError(answer, 431, 'HEADERS_TOO_LARGE');
  });

  it('400 BAD_REQUEST for a %-escape in the path that does not decode (the router refuses it)', async () => {
    const res = await send(base, 'GET', `/positions/%zz${'a'.repeat(5000)}`);
    expect(res.status).toBe(400);
    expect(expectErrorShape(res.body, 'BAD_REQUEST').message).toMatch(/^malformed URL/);
    expect(JSON.stringify(res.body).length).toBeLessThan(1024);
  });

  it('414 URI_TOO_LONG for a path parameter over the router limit', async () => {
    const res = await send(base, 'GET', `/positions/${'1'.repeat(5000)}`);
    expect(res.status).toBe(414);
    expectErrorShape(res.body, 'URI_TOO_LONG');
    expect(JSON.stringify(res.body).length).toBeLessThan(1024);
  });

  it('serves a well-formed request on a raw socket (control)', async () => {
    const answer = await exchange([request('GET', '/health', undefined, 'Connection: close\r\n')]);
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({ status: 'ok' });
  });
});

describe('echoed client input is cut to 200 characters', () => {
  const LONG = 'k'.repeat(60 * 1024);

  it('a 60 KB unknown key makes a small error', async () => {
    const res = await send(base, 'POST', `/accounts/${UNFUNDED}/deposit`, `{"amount": "1", "${LONG}": 1}`);
    expect(res.status).toBe(400);
    const error = expectErrorShape(res.body, 'VALIDATION_ERROR');
    expect(JSON.stringify(res.body).length).toBeLessThan(2048);
    expect(error.message.length).toBeLessThanOrEqual(220);
    expect(error.message.startsWith('invalid body.kkkk')).toBe(true);
    const fields = (error.details as { fields: { field: string }[] }).fields;
    expect(fields).toHaveLength(1);
    expect(fields[0]!.field.length).toBeLessThanOrEqual(200);
    expect(fields[0]!.field.startsWith('body.kkkk')).toBe(true);
    await expectUnfundedUntouched();
  });

  it('thousands of unknown keys make a small error too', async () => {
    const keys = Array.from({ length: 3000 }, (_, i) => `"unknown_${i}": 1`).join(', ');
    const res = await send(base, 'POST', `/accounts/${UNFUNDED}/deposit`, `{"amount": "1", ${keys}}`);
    expect(res.status).toBe(400);
    const error = expectErrorShape(res.body, 'VALIDATION_ERROR');
    expect(JSON.stringify(res.body).length).toBeLessThan(4096);
    expect(error.message).toMatch(/ and 2980 more$/);
    expect((error.details as { fields: unknown[] }).fields).toHaveLength(20);
  });

  it('a 30 KB duplicate key makes a small error', async () => {
    const key = LONG.slice(0, 30 * 1024);
    const res = await send(base, 'POST', `/accounts/${UNFUNDED}/deposit`, `{"${key}": 1, "${key}": 2}`);
    expect(res.status).toBe(400);
    const error = expectErrorShape(res.body, 'VALIDATION_ERROR');
    expect(JSON.stringify(res.body).length).toBeLessThan(2048);
    expect(error.message.startsWith('duplicate key "kkkk')).toBe(true);
  });

  it('malformed JSON with 60 KB of text makes a small error', async () => {
    for (const body of [`{"amount": "1", ${LONG}}`, `{"amount": 0.123456789012345678, "${LONG.slice(0, 30_000)}" ${LONG.slice(0, 30_000)}}`]) {
      const res = await send(base, 'POST', `/accounts/${UNFUNDED}/deposit`, body);
      expect(res.status).toBe(400);
      const error = expectErrorShape(res.body, 'VALIDATION_ERROR');
      expect(error.message).toMatch(/^malformed JSON/);
      expect(JSON.stringify(res.body).length).toBeLessThan(2048);
    }
  });

  it('a 10 KB unknown URL makes a small 404', async () => {
    const url = `/${'u'.repeat(10 * 1024)}`;
    const res = await send(base, 'GET', url);
    expect(res.status).toBe(404);
    const error = expectErrorShape(res.body, 'NOT_FOUND');
    expect(error.message.startsWith('no route GET /uuuu')).toBe(true);
    expect(error.message.length).toBeLessThanOrEqual(220);
  });

  it('an 8 KB content type makes a small 415', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: `/accounts/${UNFUNDED}/deposit`,
      headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': `text/${'t'.repeat(8 * 1024)}` },
      payload: 'x',
    });
    expect(res.statusCode).toBe(415);
    expectErrorShape(JSON.parse(res.body), 'UNSUPPORTED_MEDIA_TYPE');
    expect(res.body.length).toBeLessThan(1024);
  });
});

describe('REQUEST_TIMEOUT_MS', () => {
  let slow: TestEngine;
  let slowPort: number;

  beforeAll(async () => {
    slow = await startEngine(t.iso, { REQUEST_TIMEOUT_MS: '1000' });
    slowPort = Number(new URL(await listen(slow.app)).port);
  });

  afterAll(async () => {
    await slow?.close();
  });

  const slowExchange = (chunks: (string | number)[]) => exchange(chunks, slowPort);

  it('answers 408 REQUEST_TIMEOUT and closes a connection whose body stalls, within about the timeout', async () => {
    const body = '{"amount": "5"}';
    const head = `POST /accounts/${UNFUNDED}/deposit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN_KEY}\r\nContent-Type: application/json\r\nContent-Length: ${body.length + 100}\r\n\r\n`;
    const answer = await slowExchange([head + body]);
    expectRawError(answer, 408, 'REQUEST_TIMEOUT');
    expect(answer.sinceFirstWriteMs).toBeGreaterThanOrEqual(900);
    expect(answer.sinceFirstWriteMs).toBeLessThan(2500);
    await expectUnfundedUntouched();
  });

  it('also when the body trickles in (each byte arriving in time is not enough)', async () => {
    const head = `POST /accounts/${UNFUNDED}/deposit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN_KEY}\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{"amount":`;
    const trickle = Array.from({ length: 12 }, () => [200, ' ']).flat();
    const started = performance.now();
    const socket = connect(slowPort, '127.0.0.1');
    const received: Buffer[] = [];
    socket.on('data', (d: Buffer) => received.push(d));
    socket.on('error', () => {});
    const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(performance.now() - started)));
    socket.write(head);
    for (const chunk of trickle) {
      if (typeof chunk === 'number') await Promise.race([new Promise((r) => setTimeout(r, chunk)), closed]);
      else if (!socket.destroyed && socket.writable) socket.write(chunk);
    }
    const closedAfter = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(Infinity), 5000))]);
    socket.destroy();
    expect(closedAfter).toBeLessThan(2500);
    expectRawError(parseResponse(Buffer.concat(received).toString('utf8')), 408, 'REQUEST_TIMEOUT');
    await expectUnfundedUntouched();
  });

  it('answers 408 when the headers themselves stall', async () => {
    const answer = await slowExchange([`GET /health HTTP/1.1\r\nHost: x\r\n`]);
    expectRawError(answer, 408, 'REQUEST_TIMEOUT');
    expect(answer.sinceFirstWriteMs).toBeLessThan(2500);
  });

  it('keeps an idle keep-alive connection open past the timeout, and serves its next request', async () => {
    const socket: Socket = connect(slowPort, '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString()));
    let closed = false;
    socket.once('close', () => (closed = true));
    const responses = (n: number) => received.split('HTTP/1.1 200').length - 1 >= n;
    const waitFor = async (n: number) => {
      await until(() => responses(n), { timeoutMs: 2000, everyMs: 20, what: `${n} responses` });
      expect(responses(n)).toBe(true);
    };
    socket.write(request('GET', '/health'));
    await waitFor(1);
    await new Promise((r) => setTimeout(r, 1800)); // idle longer than REQUEST_TIMEOUT_MS
    expect(closed).toBe(false);
    socket.write(request('GET', '/health'));
    await waitFor(2);
    expect(received).not.toContain('408');
    socket.destroy();
  });

  it('does not keep a refused connection whose client leaves it half-open', async () => {
    const connections = () => new Promise<number>((resolve, reject) => slow.app.server.getConnections((e, n) => (e ? reject(e) : resolve(n))));
    const socket = connect({ port: slowPort, host: '127.0.0.1', allowHalfOpen: true });
    socket.on('error', () => {});
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString()));
    const ended = new Promise<void>((resolve) => socket.once('end', resolve));
    socket.write('GARBAGE\r\n\r\n');
    await ended; // the server's FIN follows its answer
    expect(parseResponse(received).status).toBe(400);
    expect(await connections()).toBeGreaterThan(0);
    const started = performance.now();
    await until(connections, { ok: (n) => n === 0, timeoutMs: 3000, what: 'the half-open connection closed' });
    expect(await connections()).toBe(0);
    expect(performance.now() - started).toBeLessThan(1500);
    socket.destroy();
  });

  it('books a request that arrives in time on the slow engine (control)', async () => {
    const res = await call(slow.app, 'POST', `/accounts/${FUNDED}/deposit`, { amount: '1' });
    expect(res.status).toBe(200);
  });
});

describe('MAX_CONNECTIONS', () => {
  let small: TestEngine;
  let smallPort: number;
  const open: Socket[] = [];

  beforeAll(async () => {
    small = await startEngine(t.iso, { MAX_CONNECTIONS: '2' });
    smallPort = Number(new URL(await listen(small.app)).port);
  });

  afterAll(async () => {
    for (const s of open) s.destroy();
    await small?.close();
  });

  /** A connection that has had one request answered (so the server surely counts it) and stays open. */
  async function servedConnection(): Promise<Socket> {
    const socket = connect(smallPort, '127.0.0.1');
    open.push(socket);
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const answered = new Promise<string>((resolve) => socket.once('data', (d: Buffer) => resolve(d.toString())));
    socket.write(request('GET', '/health'));
    expect(await answered).toMatch(/^HTTP\/1\.1 200/);
    return socket;
  }

  it('closes a third connection at once while two are open, and accepts one again after one closes', async () => {
    const first = await servedConnection();
    const second = await servedConnection();
    expect(first.destroyed || second.destroyed).toBe(false);

    const third = connect(smallPort, '127.0.0.1');
    open.push(third);
    third.on('error', () => {});
    let thirdGot = '';
    third.on('data', (d: Buffer) => (thirdGot += d.toString()));
    const started = performance.now();
    const thirdClosed = new Promise<number>((resolve) => third.once('close', () => resolve(performance.now() - started)));
    third.once('connect', () => third.write(request('GET', '/health')));
    const closedAfter = await Promise.race([thirdClosed, new Promise<number>((r) => setTimeout(() => r(Infinity), 3000))]);
    expect(closedAfter).toBeLessThan(1000);
    expect(thirdGot).toBe('');
    expect(first.destroyed || second.destroyed).toBe(false);

    const firstClosed = new Promise<void>((resolve) => first.once('close', () => resolve()));
    first.destroy();
    await firstClosed;
    // The server has seen the close once it counts one connection again.
    const connections = () => new Promise<number>((resolve, reject) => small.app.server.getConnections((e, n) => (e ? reject(e) : resolve(n))));
    await until(connections, { ok: (n) => n < 2, timeoutMs: 3000, what: 'the server seeing the close' });
    const again = await servedConnection();
    expect(again.destroyed).toBe(false);
  });
});
