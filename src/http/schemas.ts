/**
 * The wire format, as zod schemas: they validate every request, type the
 * handlers, and generate the OpenAPI document at /docs.
 */
import { z } from 'zod';
import { D, type Dec, MAX_INPUT_DECIMALS, MAX_INPUT_VALUE } from '../domain/decimal.js';
import { tierProblem } from '../domain/markets.js';

const DECIMAL_TEXT = /^(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

/**
 * A price, quantity or amount: a JSON number or a decimal string, finite,
 * positive, at most 18 decimal places. JSON numbers arrive exact (see json.ts).
 */
const required = (otherwise: string) => (issue: { input?: unknown }) => (issue.input === undefined ? 'is required' : otherwise);

export const positiveDecimal = z
  .union([z.number(), z.string()], { error: required('must be a decimal number or a decimal string') })
  .transform((value, ctx): Dec => {
    const fail = (message: string) => {
      ctx.addIssue({ code: 'custom', message });
      return z.NEVER;
    };
    if (typeof value === 'number' && !Number.isFinite(value)) return fail('must be a finite decimal');
    if (typeof value === 'string' && !DECIMAL_TEXT.test(value)) return fail('must be a decimal number such as "0.1" or "50000"');
    const d = new D(value);
    if (!d.isFinite()) return fail('must be a finite decimal');
    if (!d.isPos() || d.isZero()) return fail('must be greater than 0');
    if (d.decimalPlaces() > MAX_INPUT_DECIMALS) return fail(`must have at most ${MAX_INPUT_DECIMALS} decimal places`);
    if (d.gte(MAX_INPUT_VALUE)) return fail('must be less than 1e20');
    return d;
  })
  .meta({ description: 'Positive decimal, up to 18 decimal places, as a JSON number or a string', examples: ['0.1', 50000] });

const MAX_ID = Number.MAX_SAFE_INTEGER;

const ACCOUNT_ID_RULE = `must be a JSON integer from 1 to ${MAX_ID}`;
export const accountIdBody = z
  .number({ error: required(ACCOUNT_ID_RULE) })
  .int(ACCOUNT_ID_RULE)
  .positive(ACCOUNT_ID_RULE)
  .max(MAX_ID, ACCOUNT_ID_RULE)
  .meta({ description: 'Account id, a positive integer', examples: [1] });

/** A positive integer in a path or query string. */
const idText = (message: string) =>
  z
    .string()
    .regex(/^[1-9][0-9]{0,15}$/, message)
    .transform(Number)
    .refine((n) => n <= MAX_ID, 'is too large');

export const accountIdParams = z.object({ account_id: idText('must be a positive integer') });

export const symbol = z
  .string({ error: required('must be a string') })
  .regex(/^[A-Z0-9_/-]{1,32}$/, 'must be 1-32 of A-Z 0-9 - _ /')
  .meta({ examples: ['BTC-PERP'] });

export const side = z.enum(['BUY', 'SELL'], { error: required('must be "BUY" or "SELL"') });

export const clientOrderId = z
  .string()
  .regex(/^[\x21-\x7e]{1,64}$/, 'must be 1-64 printable ASCII characters without spaces')
  .meta({ description: 'Makes the trade idempotent per account' });

export const DEFAULT_PAGE_LIMIT = 100;

const limitParam = z
  .string()
  .regex(/^[0-9]{1,7}$/, 'must be an integer from 1 to 1000')
  .transform(Number)
  .refine((n) => n >= 1 && n <= 1000, 'must be an integer from 1 to 1000')
  .optional();

const sequenceCursor = idText('must be a cursor returned by a previous page').optional();

export const pageQuery = z.object({ limit: limitParam, cursor: sequenceCursor }).strict();

export const LEDGER_KINDS = ['TRADE', 'DEPOSIT', 'WITHDRAWAL', 'FUNDING', 'LIQUIDATION_FEE', 'INSURANCE'] as const;
const ledgerKindList = new RegExp(`^(${LEDGER_KINDS.join('|')})(,(${LEDGER_KINDS.join('|')}))*$`);

export const statementQuery = z
  .object({
    limit: limitParam,
    cursor: sequenceCursor,
    kinds: z
      .string()
      .regex(ledgerKindList, `must be a comma-separated list of ${LEDGER_KINDS.join(', ')}`)
      .transform((s) => [...new Set(s.split(','))] as (typeof LEDGER_KINDS)[number][])
      .optional()
      .meta({ description: 'Only rows of these kinds (default: all)' }),
  })
  .strict();

export const marginReportQuery = z
  .object({
    limit: limitParam,
    cursor: z.string().regex(/^[A-Za-z0-9_-]{1,256}$/, 'must be a cursor returned by a previous page').optional(),
    status: z.enum(['healthy', 'margin_call', 'liquidatable'], { error: 'must be healthy, margin_call or liquidatable' }).optional(),
  })
  .strict();

export const liquidationsQuery = z
  .object({ account_id: idText('must be a positive integer').optional(), limit: limitParam, cursor: sequenceCursor })
  .strict();

export const amountBody = z.object({ amount: positiveDecimal }).strict();

export const tradeBody = z
  .object({
    account_id: accountIdBody,
    symbol,
    side,
    quantity: positiveDecimal,
    price: positiveDecimal,
    liquidity: z
      .enum(['maker', 'taker'], { error: 'must be "maker" or "taker"' })
      .optional()
      .meta({ description: 'Which side of the book the fill was on (default taker): chooses maker_fee_rate or taker_fee_rate' }),
    client_order_id: clientOrderId.optional(),
  })
  .strict();

export const markBody = z
  .object({
    symbol,
    price: positiveDecimal,
    force: z.boolean({ error: 'must be true or false' }).optional().meta({ description: 'Post a mark beyond the market\'s max_mark_move' }),
  })
  .strict();

export const symbolParams = z.object({ symbol });

/** A funding rate: a signed decimal with |rate| < 1, at most 18 decimal places, as a JSON number or a string. */
const fundingRate = z
  .union([z.number(), z.string()], { error: required('must be a decimal number or a decimal string') })
  .transform((value, ctx): Dec => {
    const text = typeof value === 'number' ? (Number.isFinite(value) ? String(value) : '') : value.trim();
    if (!/^-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/.test(text)) {
      ctx.addIssue({ code: 'custom', message: 'must be a decimal number such as "0.0001" or "-0.0003"' });
      return z.NEVER;
    }
    const d = new D(text);
    if (!d.abs().lt(1) || d.decimalPlaces() > MAX_INPUT_DECIMALS) {
      ctx.addIssue({ code: 'custom', message: `must be a decimal with |rate| < 1 and at most ${MAX_INPUT_DECIMALS} decimal places` });
      return z.NEVER;
    }
    return d;
  })
  .meta({ description: 'Funding rate, |rate| < 1; positive: longs pay shorts', examples: ['0.0001', '-0.00025'] });

export const fundingBody = z
  .object({
    symbol,
    rate: fundingRate,
    funding_id: z
      .string({ error: required('must be a string') })
      .regex(/^[\x21-\x7e]{1,64}$/, 'must be 1-64 printable ASCII characters without spaces')
      .meta({ description: 'Unique across markets; makes the request idempotent', examples: ['BTC-PERP-2026-12-02T08'] }),
  })
  .strict();

/** A decimal from `min` to 1 (a rate or fraction), as a JSON number or a string; stored as its decimal text. */
const fraction = (min: 0 | -1) =>
  z
    .union([z.number(), z.string()], { error: 'must be a decimal number or a decimal string' })
    .transform((value, ctx): string => {
      const text = typeof value === 'number' ? String(value) : value.trim();
      if (!/^-?(?:\d+(?:\.\d*)?|\.\d+)$/.test(text)) {
        ctx.addIssue({ code: 'custom', message: 'must be a plain decimal such as "0.05"' });
        return z.NEVER;
      }
      const d = new D(text);
      if (d.lt(min) || d.gt(1) || d.decimalPlaces() > MAX_INPUT_DECIMALS) {
        ctx.addIssue({ code: 'custom', message: `must be a decimal from ${min} to 1 with at most ${MAX_INPUT_DECIMALS} places` });
        return z.NEVER;
      }
      return d.toString();
    });

const tier = z
  .object({
    max_notional: positiveDecimal.nullable().transform((d) => (d === null ? null : d.toString())),
    initial_margin_rate: fraction(0),
    maintenance_margin_rate: fraction(0),
  })
  .strict();

export const marketBody = z
  .object({
    status: z.enum(['active', 'reduce_only', 'halted'], { error: 'must be active, reduce_only or halted' }).optional(),
    tiers: z
      .array(tier)
      .min(1)
      .max(32)
      .optional()
      .superRefine((tiers, ctx) => {
        if (tiers === undefined) return;
        const problem = tierProblem(
          tiers.map((t) => ({
            maxNotional: t.max_notional === null ? null : new D(t.max_notional),
            initialMarginRate: new D(t.initial_margin_rate),
            maintenanceMarginRate: new D(t.maintenance_margin_rate),
          })),
        );
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      }),
    trade_price_band: fraction(0).optional(),
    max_mark_move: fraction(0).optional(),
    liquidation_mode: z.enum(['full', 'partial'], { error: 'must be full or partial' }).optional(),
    liquidation_fee_rate: fraction(0).optional(),
    liquidation_buffer: fraction(0).optional(),
    maker_fee_rate: fraction(-1).optional(),
    taker_fee_rate: fraction(0).optional(),
    lot_size: positiveDecimal.transform((d) => d.toString()).optional(),
  })
  .strict()
  .meta({ description: 'Any of the market parameters; the ones not sent keep their value (or the engine default)' });

const rateText = z.string().meta({ description: 'Decimal string' });

export const marketResponse = z.object({
  symbol: z.string(),
  status: z.enum(['active', 'reduce_only', 'halted']),
  tiers: z.array(z.object({ max_notional: rateText.nullable(), initial_margin_rate: rateText, maintenance_margin_rate: rateText })),
  trade_price_band: rateText,
  max_mark_move: rateText,
  liquidation_mode: z.enum(['full', 'partial']),
  liquidation_fee_rate: rateText,
  liquidation_buffer: rateText,
  maker_fee_rate: rateText,
  taker_fee_rate: rateText,
  lot_size: rateText.nullable(),
  mark_price: rateText.nullable(),
  open_interest: z.object({ long: rateText, short: rateText }),
  holders: z.number(),
  fees_collected: rateText,
  created_at: z.string(),
  updated_at: z.string(),
});

export const marketsResponse = z.object({ markets: z.array(marketResponse) });

export const marketHistoryResponse = z.object({
  events: z.array(
    z.object({
      event_id: z.number(),
      type: z.enum(['listed', 'mark', 'params', 'funding']),
      price: rateText.nullable(),
      previous_price: rateText.nullable(),
      forced: z.boolean().nullable(),
      changes: z.record(z.string(), z.unknown()).nullable(),
      actor: z.string().nullable(),
      created_at: z.string(),
    }),
  ),
  next_cursor: z.string().nullable(),
});

const role = z.enum(['admin', 'operator', 'treasury', 'trading', 'reader', 'account'], {
  error: 'must be admin, operator, treasury, trading, reader or account',
});

export const keyBody = z
  .object({
    name: z.string().min(1).max(100).regex(/^[\x20-\x7e]+$/, 'must be 1-100 printable ASCII characters'),
    role,
    account_ids: z.array(accountIdBody).min(1).max(1000).optional(),
  })
  .strict()
  .superRefine((b, ctx) => {
    if (b.role === 'account' && b.account_ids === undefined) ctx.addIssue({ code: 'custom', path: ['account_ids'], message: 'is required for an account key' });
    if (b.role !== 'account' && b.account_ids !== undefined) ctx.addIssue({ code: 'custom', path: ['account_ids'], message: 'only an account key has accounts' });
  });

export const keyIdParams = z.object({ key_id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be a key id such as key_0123456789ab') });

const keyView = z.object({
  key_id: z.string(),
  name: z.string(),
  role,
  account_ids: z.array(z.number()),
  created_at: z.string(),
  created_by: z.string().nullable(),
  revoked_at: z.string().nullable(),
  revoked_by: z.string().nullable(),
});

export const keyCreatedResponse = keyView
  .pick({ key_id: true, name: true, role: true, account_ids: true, created_at: true })
  .extend({ key: z.string().meta({ description: 'The secret: shown only in this answer' }) });
export const keysResponse = z.object({ keys: z.array(keyView) });
export const keyResponse = keyView;

// ---- responses (documentation and handler types; amounts are decimal strings)

const amount = z.string().meta({ description: 'Decimal string' });

export const errorResponse = z.object({
  success: z.literal(false),
  error: z.object({ code: z.string(), message: z.string(), details: z.record(z.string(), z.unknown()).optional() }),
});

export const cashResponse = z.object({ account_id: z.number(), balance: amount });

export const tradeResponse = z.object({
  success: z.literal(true),
  trade_id: z.number(),
  account_id: z.number(),
  symbol: z.string(),
  side,
  quantity: amount,
  price: amount,
  realised_pnl: amount,
  fee: amount.meta({ description: 'The fee this fill paid (negative: a maker rebate), already taken off the balance' }),
  liquidity: z.enum(['maker', 'taker']),
  position: z.object({ symbol: z.string(), quantity: amount, entry_price: amount.nullable() }),
  balance: amount,
  equity: amount,
});

/** An account's margin figures and positions (GET /positions, and the account a preview would leave). */
const accountFigures = {
  balance: amount,
  equity: amount,
  unrealised_pnl: amount,
  notional: amount,
  initial_margin: amount,
  maintenance_margin: amount,
  available_margin: amount,
  margin_utilisation_pct: amount.nullable(),
  status: z.enum(['healthy', 'margin_call', 'liquidatable']),
  positions: z.array(
    z.object({
      symbol: z.string(),
      quantity: amount,
      entry_price: amount,
      mark_price: amount.nullable(),
      notional: amount,
      unrealised_pnl: amount,
      tier: z.number().meta({ description: "The margin tier the position's notional falls in (1 = first)" }),
      initial_margin: amount,
      maintenance_margin: amount,
      liquidation_price: amount.nullable().meta({
        description: "The mark of this symbol at which the account's equity would equal its maintenance margin, the other marks held; null when no positive price does that",
      }),
    }),
  ),
};

export const positionsResponse = z.object({ account_id: z.number(), ...accountFigures });

export const previewResponse = z.object({
  accepted: z.boolean(),
  error: z.object({ code: z.string(), message: z.string(), details: z.record(z.string(), z.unknown()).optional() }).optional(),
  fee: amount,
  after: z.object(accountFigures).meta({ description: 'The account as the trade would leave it (unchanged when refused)' }),
});

export const insuranceFundResponse = z.object({
  balance: amount,
  fees_received: amount,
  deposits: amount,
  shortfalls_paid: amount,
  bad_debt: amount,
});

export const insuranceHistoryResponse = z.object({
  movements: z.array(
    z.object({
      movement_id: z.number(),
      type: z.enum(['fee', 'deposit', 'shortfall']),
      amount: amount.meta({ description: 'Into the fund (fee, deposit) or paid out of it (shortfall)' }),
      balance: amount.meta({ description: 'The fund after this movement' }),
      liquidation_id: z.number().nullable(),
      account_id: z.number().nullable(),
      shortfall: amount.nullable(),
      bad_debt: amount.nullable(),
      actor: z.string().nullable(),
      created_at: z.string(),
    }),
  ),
  next_cursor: z.string().nullable(),
});

export const tradesResponse = z.object({
  trades: z.array(
    z.object({
      trade_id: z.number(),
      account_id: z.number(),
      symbol: z.string(),
      side,
      quantity: amount,
      price: amount,
      realised_pnl: amount,
      fee: amount,
      liquidity: z.enum(['maker', 'taker']).nullable().meta({ description: "null on a liquidation's closing trades" }),
      liquidation_id: z.number().nullable(),
      client_order_id: z.string().nullable(),
      actor: z.string().nullable().meta({ description: 'The key id that booked it (null with AUTH=off)' }),
      created_at: z.string(),
    }),
  ),
  next_cursor: z.string().nullable(),
});

export const statementResponse = z.object({
  entries: z.array(
    z.object({
      entry_id: z.number(),
      account_id: z.number(),
      seq: z.number().meta({ description: "The row's place in the account's ledger, from 1" }),
      kind: z.enum(LEDGER_KINDS),
      change: amount.meta({ description: "What the row did to the balance (signed): balance minus the previous row's balance" }),
      balance: amount.meta({ description: 'The balance after the row' }),
      amount: amount.nullable().meta({ description: 'Cash kinds: the amount (positive); FUNDING: the signed payment; null on a trade' }),
      symbol: z.string().nullable(),
      side: side.nullable(),
      quantity: amount.nullable(),
      price: amount.nullable().meta({ description: 'A trade: its price; FUNDING: the mark it was charged at' }),
      realised_pnl: amount.nullable(),
      fee: amount.nullable().meta({ description: 'A trade: its trading fee ("0" before fees existed); null otherwise' }),
      liquidity: z.enum(['maker', 'taker']).nullable(),
      position_quantity: amount.nullable().meta({ description: 'A trade: the signed position after it; FUNDING: the position charged' }),
      liquidation_id: z.number().nullable(),
      funding_id: z.string().nullable(),
      client_order_id: z.string().nullable(),
      actor: z.string().nullable(),
      created_at: z.string(),
    }),
  ),
  next_cursor: z.string().nullable(),
});

export const markResponse = z.object({
  symbol: z.string(),
  price: amount,
  liquidated: z.array(z.number()),
  sweep: z.enum(['complete', 'pending']).meta({ description: 'pending (with status 202): committed; recovery finishes the liquidation sweep' }),
});

export const fundingResponse = z.object({
  symbol: z.string(),
  rate: amount,
  funding_id: z.string(),
  mark_price: amount.meta({ description: 'The mark every holder was charged at' }),
  accounts: z.number().meta({ description: 'Holders charged, one FUNDING ledger row each' }),
  paid: amount.meta({ description: 'Total paid by the payers (non-negative)' }),
  received: amount.meta({ description: 'Total received by the receivers (non-negative)' }),
  liquidated: z.array(z.number()).meta({ description: 'Accounts the payments put under maintenance, liquidated, ascending' }),
});

export const marginReportResponse = z.object({
  total_accounts: z.number(),
  liquidation_candidates: z.array(z.number()),
  accounts_detail: z.array(
    z.object({
      account_id: z.number(),
      balance: amount,
      equity: amount,
      notional: amount,
      initial_margin: amount,
      maintenance_margin: amount,
      margin_utilisation_pct: amount.nullable(),
      status: z.enum(['healthy', 'margin_call', 'liquidatable']),
      liquidation_risk: z.boolean(),
    }),
  ),
  next_cursor: z.string().nullable(),
});

export const liquidationsResponse = z.object({
  liquidations: z.array(
    z.object({
      liquidation_id: z.number(),
      account_id: z.number(),
      reason: z.string(),
      mode: z.enum(['full', 'partial']),
      equity: amount,
      maintenance_margin: amount,
      realised_pnl: amount,
      shortfall: amount,
      fee: amount.meta({ description: 'The liquidation fee, paid into the insurance fund' }),
      bad_debt: amount.nullable().meta({ description: 'The part of the shortfall the insurance fund could not pay (null until settled against the fund)' }),
      positions: z
        .array(z.object({ symbol: z.string(), quantity: amount, entry_price: amount, mark_price: amount }))
        .meta({ description: 'The parts closed: signed quantity, entry, and the mark it closed at' }),
      positions_left: z.array(z.object({ symbol: z.string(), quantity: amount, entry_price: amount })),
      actor: z.string().nullable().meta({ description: 'The key id of the tick, trade or withdrawal that triggered it' }),
      created_at: z.string(),
    }),
  ),
  next_cursor: z.string().nullable(),
});

/**
 * The types of the bodies above, for the code that builds them (src/http/views.ts,
 * and anything kept in the wire shape, such as a booked trade's result): each
 * shape is declared once, here, as its schema.
 */
export type TradeResponse = z.infer<typeof tradeResponse>;
export type PositionsResponse = z.infer<typeof positionsResponse>;
export type PreviewResponse = z.infer<typeof previewResponse>;
export type InsuranceFundResponse = z.infer<typeof insuranceFundResponse>;
export type InsuranceHistoryResponse = z.infer<typeof insuranceHistoryResponse>;
export type TradesResponse = z.infer<typeof tradesResponse>;
export type StatementResponse = z.infer<typeof statementResponse>;
export type MarginReportResponse = z.infer<typeof marginReportResponse>;
export type LiquidationsResponse = z.infer<typeof liquidationsResponse>;
export type MarketResponse = z.infer<typeof marketResponse>;
export type FundingResponse = z.infer<typeof fundingResponse>;
export type MarketEventResponse = z.infer<typeof marketHistoryResponse>['events'][number];
export type KeyResponse = z.infer<typeof keyView>;

export const eventsQuery = z
  .object({
    types: z
      .string()
      .regex(
        /^(trade|liquidation|mark|market|funding)(,(trade|liquidation|mark|market|funding))*$/,
        'must be a comma-separated list of trade, liquidation, mark, market, funding',
      )
      .optional()
      .meta({ description: 'Only these event types (default: all)' }),
    account_id: idText('must be a positive integer').optional().meta({ description: "Only this account's trades and liquidations (market-wide events still come)" }),
  })
  .strict();

export const eventsHeaders = z.object({
  'last-event-id': z
    .string()
    .regex(/^\d{1,20}-[0-3]-\d{1,20}$/, 'must be an event id received from this stream')
    .optional()
    .meta({ description: 'Resume after this event (sent by EventSource on reconnecting)' }),
});

export const healthResponse = z.object({ status: z.literal('ok') });
export const readyResponse = z.object({ status: z.literal('ready'), redis: z.literal('up'), postgres: z.literal('up') });
