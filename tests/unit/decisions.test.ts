/**
 * The write path's decisions are pure functions of an account's snapshot:
 * each is checked here without Redis or PostgreSQL, for what it books, what
 * it answers without booking, and what it refuses (in the contract's order).
 */
import { describe, expect, it } from 'vitest';
import { defaultMarketParams, loadConfig } from '../../src/config.js';
import { D } from '../../src/domain/decimal.js';
import { flatRules, type Position } from '../../src/domain/margin.js';
import { effectiveMarket, type MarketStatus } from '../../src/domain/markets.js';
import type { Snapshot } from '../../src/services/account-gate.js';
import type { Decision } from '../../src/services/account-runner.js';
import { tradeFingerprint } from '../../src/services/ledger-sync.js';
import { fundingDecision } from '../../src/services/funding.js';
import { liquidationDecision } from '../../src/services/liquidation.js';
import { depositDecision, tradeDecision, withdrawalDecision, type TradeCommand } from '../../src/services/trading.js';

const rates = flatRules({ initial: new D('0.2'), maintenance: new D('0.1') }).paramsOf('');
const defaults = defaultMarketParams(loadConfig({}));

function snapshot(opts: { seq?: number; balance?: string; positions?: [string, string, string][]; marks?: Record<string, string>; status?: MarketStatus; clientOrder?: string }): Snapshot {
  const positions = new Map<string, Position>((opts.positions ?? []).map(([s, q, e]) => [s, { quantity: new D(q), entryPrice: new D(e) }]));
  const marks = new Map(Object.entries(opts.marks ?? { 'BTC-PERP': '50000' }).map(([s, p]) => [s, new D(p)]));
  const markets = new Map([...marks.keys()].map((s) => [s, effectiveMarket(s, opts.status ?? 'active', {}, defaults)]));
  return {
    account: { accountId: 7, seq: opts.seq ?? 3, balance: new D(opts.balance ?? '10000'), positions },
    marks,
    markets,
    marksEpoch: '1',
    clientOrder: opts.clientOrder ?? null,
  };
}

const trade = (over: Partial<TradeCommand> = {}): TradeCommand => ({
  accountId: 7,
  symbol: 'BTC-PERP',
  side: 'BUY',
  quantity: new D('1'),
  price: new D('50000'),
  clientOrderId: null,
  liquidity: 'taker',
  actor: 'key_a',
  ...over,
});

function booked<R>(d: Decision<R>) {
  if (d.kind !== 'book') throw new Error(`expected rows to book, got ${d.kind}${d.kind === 'refuse' ? ` ${d.error.code}` : ''}`);
  return d;
}
const refusal = <R>(d: Decision<R>) => (d.kind === 'refuse' ? d.error.code : `not refused (${d.kind})`);

describe('tradeDecision', () => {
  it('books one TRADE row at seq + 1 with the position, equity and balance after it', () => {
    const d = booked(tradeDecision(trade(), snapshot({}), rates));
    expect(d.rows).toEqual([
      expect.objectContaining({ accountId: 7, seq: 4, kind: 'TRADE', symbol: 'BTC-PERP', side: 'BUY', quantity: '1', price: '50000', realisedPnl: '0', positionQuantity: '1', positionEntryPrice: '50000', equity: '10000', balance: '10000', actor: 'key_a' }),
    ]);
    expect(d.after.positions.get('BTC-PERP')?.quantity.toString()).toBe('1');
    expect(d.totals?.initialMargin.toString()).toBe('10000');
  });

  it('refuses in the contract order: unlisted market, then status, then band, then margin', () => {
    expect(refusal(tradeDecision(trade({ symbol: 'ETH-PERP' }), snapshot({ status: 'halted' }), rates))).toBe('MARKET_NOT_FOUND');
    // Halted and out of band and short of margin: the status answers.
    expect(refusal(tradeDecision(trade({ quantity: new D('100'), price: new D('90000') }), snapshot({ status: 'halted' }), rates))).toBe('MARKET_HALTED');
    expect(refusal(tradeDecision(trade({ quantity: new D('100'), price: new D('90000') }), snapshot({}), rates))).toBe('PRICE_OUT_OF_BAND');
    expect(refusal(tradeDecision(trade({ quantity: new D('1.000000000000000001') }), snapshot({}), rates))).toBe('INSUFFICIENT_MARGIN');
  });

  it('answers a repeated client order id with its first result, and refuses other parameters under it', () => {
    const first = { success: true, trade_id: 11 };
    const stored = JSON.stringify({ fp: tradeFingerprint('BTC-PERP', 'BUY', '1', '50000'), result: first });
    const same = tradeDecision(trade({ clientOrderId: 'c1' }), snapshot({ clientOrder: stored }), rates);
    expect(same).toEqual({ kind: 'answer', result: { answer: first, underMaintenance: false } });
    expect(refusal(tradeDecision(trade({ clientOrderId: 'c1', price: new D('50001') }), snapshot({ clientOrder: stored }), rates))).toBe('IDEMPOTENCY_CONFLICT');
  });

  it('says when the trade leaves the account under maintenance (a reduction on an account under water)', () => {
    // Long 2 from 60000, mark 50000: equity 1000 - 20000 < 0.1 * 100000; selling 1 reduces, and is still under.
    const s = snapshot({ balance: '1000', positions: [['BTC-PERP', '2', '60000']] });
    const d = booked(tradeDecision(trade({ side: 'SELL', price: new D('50000') }), s, rates));
    const entries = d.rows.map((r, i) => ({ ...r, entryId: 100 + i, createdAt: new Date(0) }));
    expect(d.result(entries as never).underMaintenance).toBe(true);
  });
});

describe('cash decisions', () => {
  it('a deposit books one DEPOSIT row and keeps the positions', () => {
    const s = snapshot({ positions: [['BTC-PERP', '1', '50000']] });
    const d = booked(depositDecision(7, new D('0.5'), null, s));
    expect(d.rows).toEqual([{ accountId: 7, seq: 4, kind: 'DEPOSIT', amount: '0.5', balance: '10000.5', actor: null }]);
    expect(d.after.positions).toBe(s.account.positions);
  });

  it('a withdrawal is refused for an account never seen, and beyond what margin leaves free', () => {
    expect(refusal(withdrawalDecision(7, new D('1'), null, snapshot({ seq: 0, balance: '0' }), rates))).toBe('ACCOUNT_NOT_FOUND');
    // 1 BTC at 50000 needs 10000 initial margin: all of the 10000 balance.
    const s = snapshot({ positions: [['BTC-PERP', '1', '50000']] });
    expect(refusal(withdrawalDecision(7, new D('0.01'), null, s, rates))).toBe('INSUFFICIENT_MARGIN');
    const d = booked(withdrawalDecision(7, new D('10000'), null, snapshot({}), rates));
    expect(d.rows[0]).toMatchObject({ kind: 'WITHDRAWAL', amount: '10000', balance: '0' });
  });
});

describe('liquidationDecision', () => {
  const why = { reason: 'mark_price' as const, symbol: 'BTC-PERP', price: new D('40000'), actor: 'key_feed' };

  it('answers null (nothing booked) for an account above maintenance', () => {
    expect(liquidationDecision(snapshot({ positions: [['BTC-PERP', '1', '50000']] }), why, 9, rates)).toEqual({ kind: 'answer', result: null });
  });

  it('closes every position at its mark and records a shortfall as an INSURANCE row', () => {
    // Long 1 from 50000 with 5000: at 40000 equity is -5000, a shortfall of 5000.
    const s = snapshot({ balance: '5000', positions: [['BTC-PERP', '1', '50000']], marks: { 'BTC-PERP': '40000' } });
    const d = booked(liquidationDecision(s, why, 9, rates));
    expect(d.rows.map((r) => [r.seq, r.kind, r.side ?? null, r.price ?? null, r.balance, r.liquidationId ?? null])).toEqual([
      [4, 'TRADE', 'SELL', '40000', '-5000', 9],
      [5, 'INSURANCE', null, null, '0', 9],
    ]);
    expect(d.liquidation).toMatchObject({ liquidationId: 9, accountId: 7, shortfall: '5000', firstSeq: 4, lastSeq: 5, triggerPrice: '40000', actor: 'key_feed' });
    expect(d.after.positions.size).toBe(0);
    expect(d.after.balance.toString()).toBe('0');
  });
});

describe('fundingDecision', () => {
  const cmd = { fundingId: 'f-1', symbol: 'BTC-PERP', rate: new D('0.0001'), mark: new D('50500'), actor: 'key_op' };

  it('books one FUNDING row: the signed change q · m · r off the balance, the mark, the position, the event', () => {
    const d = booked(fundingDecision(cmd, snapshot({ seq: 4, balance: '1000', positions: [['BTC-PERP', '0.2', '50000']] }), rates));
    expect(d.rows).toEqual([
      { accountId: 7, seq: 5, kind: 'FUNDING', symbol: 'BTC-PERP', price: '50500', positionQuantity: '0.2', amount: '-1.01', fundingId: 'f-1', balance: '998.99', actor: 'key_op' },
    ]);
    expect(d.after.balance.toString()).toBe('998.99');
    expect(d.after.positions.get('BTC-PERP')!.quantity.toString()).toBe('0.2');
  });

  it('pays a short at a positive rate, and charges it at a negative one', () => {
    const short = snapshot({ balance: '1000', positions: [['BTC-PERP', '-0.1', '50000']] });
    expect(booked(fundingDecision(cmd, short, rates)).rows[0]).toMatchObject({ amount: '0.505', balance: '1000.505' });
    expect(booked(fundingDecision({ ...cmd, rate: new D('-0.0002') }, short, rates)).rows[0]).toMatchObject({ amount: '-1.01', balance: '998.99' });
  });

  it('books nothing for an account that no longer holds the symbol', () => {
    expect(fundingDecision(cmd, snapshot({ positions: [['ETH-PERP', '1', '3000']], marks: { 'BTC-PERP': '50000', 'ETH-PERP': '3000' } }), rates)).toEqual({ kind: 'answer', result: null });
  });
});
