/**
 * GET /dashboard in a real browser: headless Chromium (Debian's, at
 * /usr/bin/chromium) against an engine listening on a real port, with real
 * Redis and PostgreSQL. Leaves a screenshot of the page in the temporary
 * directory (dashboard.png), or in docs/dashboard.png with UPDATE_SCREENSHOT=1.
 *
 * The book (rates 20% / 10%), opened at BTC-PERP 50000:
 *
 *  account  cash   position    MM    utilisation   at 44000
 *  safe     10000  long 0.1    500    5            (long 0.13 by then) equity 9220, 6.2 %
 *  risky     1000  long 0.1    500   50            equity 400 < MM 440: liquidated, then flat
 *  edge      1100  long 0.1    500   45.45…        equity 500, MM 440, IM 880: margin call, 88 %
 *  short     5000  short 0.2  1000   20            equity 6200, 14.19… %
 */
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, startTestEngine, type EngineFixture } from '../helpers/engine.js';
import { send } from '../helpers/http.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// The committed screenshot changes only when asked for, so a test run leaves the checkout clean.
const SCREENSHOT = process.env.UPDATE_SCREENSHOT === '1' ? fileURLToPath(new URL('../../docs/dashboard.png', import.meta.url)) : join(tmpdir(), 'dashboard.png');

let t: EngineFixture;
let base: string;
let browser: Browser;
let context: BrowserContext;
let page: Page;
/** Every request the page made: URL and headers. */
const requests: { url: string; headers: Record<string, string> }[] = [];
/** Console messages about the Content-Security-Policy (there should be none). */
const cspViolations: string[] = [];
let safe: number, risky: number, edge: number, short: number;

beforeAll(async () => {
  t = await startTestEngine();
  base = await t.listen();
  await t.mark('BTC-PERP', 50000);
  await t.mark('ETH-PERP', 3000);
  [safe, risky, edge, short] = [t.freshAccount(), t.freshAccount(), t.freshAccount(), t.freshAccount()];
  await t.deposit(safe, 10000);
  await t.deposit(risky, 1000);
  await t.deposit(edge, 1100);
  await t.deposit(short, 5000);
  expect((await t.post('/insurance-fund/deposit', { amount: '1234.5' })).status).toBe(200);
  for (const [id, side, qty] of [[safe, 'BUY', '0.1'], [risky, 'BUY', '0.1'], [edge, 'BUY', '0.1'], [short, 'SELL', '0.2']] as const) {
    const res = await t.trade(id, 'BTC-PERP', side, qty, 50000);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  }

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  context = await browser.newContext({ viewport: { width: 1280, height: 600 } });
  page = await context.newPage();
  page.on('request', (req) => requests.push({ url: req.url(), headers: req.headers() }));
  page.on('console', (msg) => {
    if (/Content.Security.Policy/i.test(msg.text())) cspViolations.push(msg.text());
  });
});

afterAll(async () => {
  await browser?.close();
  await t?.close();
});

async function enterKey(p: Page, key: string): Promise<void> {
  await p.goto(`${base}/dashboard`);
  await p.locator('#key').fill(key);
  await p.locator('#connect').click();
}

/** The shared page, connected with the admin key (whatever tests ran before); `live`: and reading live events. */
async function connected({ live }: { live: boolean }): Promise<void> {
  if (await page.locator('#panels').isHidden()) await enterKey(page, ADMIN_KEY);
  await page.locator('#panels').waitFor({ state: 'visible' });
  // Up to one keep-alive interval, should the stream's headers wait for its first line.
  if (live) await page.waitForSelector('#status[data-state="open"]', { timeout: 20_000 });
}
/** Polls until the value matches (the page updates on its own: on live events, and every 2 s). */
const eventually = <T>(probe: () => Promise<T>) => expect.poll(probe, { timeout: 10_000, interval: 50 });

describe('GET /dashboard', () => {
  it('is public HTML with a Content-Security-Policy that allows only its own inline script and style', async () => {
    const res = await fetch(`${base}/dashboard`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toMatch(/script-src 'sha256-[A-Za-z0-9+/]{43}='(;|$)/);
    expect(csp).toMatch(/style-src 'sha256-[A-Za-z0-9+/]{43}='(;|$)/);
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe');
    expect(await res.text()).toContain('<title>Margin engine');
  });

  it('after the admin key is entered, shows the markets with their marks and the riskiest accounts first', async () => {
    await enterKey(page, ADMIN_KEY);
    const btc = page.locator('#markets tr[data-symbol="BTC-PERP"]');
    await eventually(() => btc.locator('td').allTextContents()).toEqual(['BTC-PERP', 'active', '50,000', '0.3', '0.2', '4']);
    await eventually(() => page.locator('#markets tr[data-symbol="ETH-PERP"] td.mark').textContent()).toBe('3,000');

    const accounts = page.locator('#accounts tbody tr[data-account-id]');
    await eventually(() => accounts.evaluateAll((rows) => rows.map((r) => Number((r as any).dataset.accountId)))).toEqual([risky, edge, short, safe]);
    await eventually(() => accounts.first().locator('td').allTextContents()).toEqual([String(risky), '1,000', '1,000', '5,000', '500', '50 %', 'healthy']);
    await eventually(() => page.locator('#accounts-note').textContent()).toMatch(/^4 accounts · 0 liquidatable now/);
    await eventually(() => page.locator('#insurance').textContent()).toBe('Insurance fund: 1,234.5 · fees in 0 · deposits 1,234.5 · shortfalls paid 0 · bad debt 0');
    expect(cspViolations).toEqual([]);
  });

  it('sends the key only as an Authorization header, keeps it only in sessionStorage, and polls the report with its ETag', async () => {
    await connected({ live: false });
    const api = requests.filter((r) => r.url.startsWith(base) && !r.url.endsWith('/dashboard'));
    expect(api.length).toBeGreaterThan(0);
    for (const r of requests) expect(r.url).not.toContain(ADMIN_KEY);
    for (const r of api) expect(r.headers.authorization).toBe(`Bearer ${ADMIN_KEY}`);
    expect(page.url()).toBe(`${base}/dashboard`);
    // The report is polled with the ETag it sent (answered 304 while nothing changed).
    await eventually(async () => requests.some((r) => r.url.includes('/margin-report') && r.headers['if-none-match']?.startsWith('"'))).toBe(true);
    // (Browser globals through globalThis: the tests are type-checked without the DOM library.)
    expect(await page.evaluate(() => [(globalThis as any).localStorage.length, Object.values((globalThis as any).sessionStorage)])).toEqual([0, [ADMIN_KEY]]);
    expect(cspViolations).toEqual([]);
  });

  it('counts the live trade events as trades per second', async () => {
    await connected({ live: true });
    const before = Number(await page.locator('#trade-count').textContent());
    for (let i = 0; i < 3; i++) {
      const res = await t.trade(safe, 'BTC-PERP', 'BUY', '0.01', 50000);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
    }
    await eventually(() => page.locator('#trade-count').textContent()).toBe(String(before + 3));
    // At least these 3 trades in the 5-second window: 0.6 a second.
    expect(Number(await page.locator('#tps').textContent())).toBeGreaterThanOrEqual(0.6);
    expect(await page.locator('#last-trade').textContent()).toMatch(new RegExp(`account ${safe} BUY 0\\.01 BTC-PERP @ 50,000$`));
  });

  it('shows a liquidation within 1 second of the POST /mark-price answer that caused it, and the new mark', async () => {
    await connected({ live: true });
    expect(await page.locator('#liquidations tbody tr[data-liquidation-id]').count()).toBe(0);
    const trades = Number(await page.locator('#trade-count').textContent());
    const res = await send(base, 'POST', '/mark-price', { symbol: 'BTC-PERP', price: 44000 });
    const answered = performance.now();
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.liquidated).toEqual([risky]);

    const liquidation = page.locator(`#liquidations tbody tr[data-account-id="${risky}"]`);
    await liquidation.waitFor({ timeout: 5000 });
    const ms = performance.now() - answered;
    expect(ms, `the liquidation row appeared ${ms.toFixed(0)} ms after the answer`).toBeLessThanOrEqual(1000);

    const cells = await liquidation.locator('td').allTextContents();
    expect(cells.slice(2)).toEqual([String(risky), 'mark price', '400', '440', '0', 'BTC-PERP 0.1 @ 44,000']);
    // The new mark, and the open interest without the liquidated position (safe holds 0.13 long by now, edge 0.1).
    await eventually(() => page.locator('#markets tr[data-symbol="BTC-PERP"] td').allTextContents()).toEqual(['BTC-PERP', 'active', '44,000', '0.23', '0.2', '3']);
    // The liquidation's closing trade came as a trade event too.
    await eventually(() => page.locator('#trade-count').textContent()).toBe(String(trades + 1));
    // The report follows: the liquidated account is flat now (the least risky), the edge one the riskiest, in margin call.
    const accounts = page.locator('#accounts tbody tr[data-account-id]');
    await eventually(() => accounts.evaluateAll((rows) => rows.map((r) => Number((r as any).dataset.accountId)))).toEqual([edge, short, safe, risky]);
    expect(await accounts.first().locator('td').allTextContents()).toEqual([String(edge), '1,100', '500', '4,400', '440', '88 %', 'margin call']);
    // The tick's margin calls came live too (risky's, then edge's: in account order).
    await eventually(() => page.locator('#last-margin-call').textContent()).toMatch(
      new RegExp(`^last margin call: account ${edge} healthy → margin call \\(equity 500, initial 880, maint\\. 440; tick\\) at `),
    );
    expect(cspViolations).toEqual([]);

    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  });

  it('reconnects after the stream drops and resumes with Last-Event-ID: a trade booked meanwhile still shows', async () => {
    await connected({ live: true });
    const price: string = (await t.get('/markets/BTC-PERP')).body.mark_price;
    // One event seen first, so the page has an id to resume after.
    const first = await t.trade(safe, 'BTC-PERP', 'BUY', '0.01', price);
    expect(first.status, JSON.stringify(first.body)).toBe(200);
    await eventually(() => page.locator('#last-trade').textContent()).toMatch(new RegExp(`^last: #${first.body.trade_id} `));
    const trades = Number(await page.locator('#trade-count').textContent());
    const seen = requests.length;
    // Cut every connection from the server's side, the page's stream among them.
    t.app.server.closeAllConnections();
    await page.waitForSelector('#status[data-state="retrying"]');
    // Booked while the page waits to reconnect (the server asks for 1 s).
    const res = await t.trade(safe, 'BTC-PERP', 'SELL', '0.01', price);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    await page.waitForSelector('#status[data-state="open"]', { timeout: 10_000 });
    await eventually(() => page.locator('#last-trade').textContent()).toMatch(new RegExp(`^last: #${res.body.trade_id} account ${safe} SELL`));
    expect(await page.locator('#trade-count').textContent()).toBe(String(trades + 1));
    const reconnect = requests.slice(seen).find((r) => r.url === `${base}/events`);
    expect(reconnect?.headers['last-event-id']).toMatch(/^\S+$/);
  });

  it("reads Server-Sent Events the page's own way: fields, comments, CRLF, multi-line data, cut anywhere", async () => {
    const text =
      ': keep-alive\r\n\r\n' +
      'id: 7-0\r\nevent: mark\r\ndata: {"symbol":"BTC-PERP","price":"50000"}\r\n\r\n' +
      'id:8-0\nevent:trade\ndata:{"a":\ndata: 1}\n\n' +
      'retry: 250\n\n' +
      'event: liquidation\ndata: {"x":"é"}\n\n' +
      ': keep-alive\n\n' +
      'data: no blank line yet';
    const expected = [
      { id: '7-0', type: 'mark', data: ['{"symbol":"BTC-PERP","price":"50000"}'] },
      { id: '8-0', type: 'trade', data: ['{"a":', '1}'] },
      { retry: 250, type: 'message', data: [] },
      { type: 'liquidation', data: ['{"x":"é"}'] },
    ];
    // Cut in two at every position, and one character at a time: the same events either way.
    const results = await page.evaluate((text) => {
      const parse = (chunks: string[]) => {
        const out: object[] = [];
        // sseParser is the page script's own (a global of its classic script).
        const feed = (globalThis as any).sseParser((e: any) => out.push(JSON.parse(JSON.stringify(e))));
        for (const chunk of chunks) feed(chunk);
        return JSON.stringify(out);
      };
      const cuts = [...Array(text.length + 1).keys()].map((i) => parse([text.slice(0, i), text.slice(i)]));
      return [...new Set([...cuts, parse([...text])])];
    }, text);
    expect(results.map((r) => JSON.parse(r))).toEqual([expected]);
  });

  it('shows the 401 message for a wrong key, and no data', async () => {
    const other = await browser.newContext();
    try {
      const p = await other.newPage();
      await enterKey(p, 'not-a-key');
      const error = p.locator('#error');
      await error.waitFor({ state: 'visible' });
      expect(await error.textContent()).toBe('401 UNAUTHENTICATED: send a valid API key as "Authorization: Bearer <key>"');
      expect(await p.locator('#panels').isHidden()).toBe(true);
      expect(await p.locator('#markets tbody tr, #accounts tbody tr, #liquidations tbody tr').count()).toBe(0);
      expect(await p.locator('#status').getAttribute('data-state')).toBe('error');
      // The wrong key is not kept, and the form is there to try again.
      expect(await p.evaluate(() => (globalThis as any).sessionStorage.length)).toBe(0);
      expect(await p.locator('#key').isVisible()).toBe(true);
    } finally {
      await other.close();
    }
  });
});
