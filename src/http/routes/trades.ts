import type { FastifyRequest } from 'fastify';
import { validatorCompiler } from 'fastify-type-provider-zod';
import type { z } from 'zod';
import type { TradeCommand } from '../../services/trading.js';
import { actorOf } from '../auth.js';
import { errorAnswer, validationAnswer, type ErrorAnswer } from '../errors.js';
import { errorResponse, tradeBatchBody, tradeBatchResponse, tradeBody, tradeResponse, type TradeBatchResponse } from '../schemas.js';
import { countTrade } from './metrics.js';
import type { RoutePlugin } from './types.js';

/** The command a trade body asks for (POST /trade, POST /trade/preview and each item of POST /trades take the same body). */
export function tradeCommand(req: FastifyRequest, body: z.output<typeof tradeBody>): TradeCommand {
  return {
    accountId: body.account_id,
    symbol: body.symbol,
    side: body.side,
    quantity: body.quantity,
    price: body.price,
    clientOrderId: body.client_order_id ?? null,
    liquidity: body.liquidity ?? 'taker',
    actor: actorOf(req),
  };
}

/**
 * POST /trades's body limit: 1 MiB. The largest well-formed trade body (an
 * account id of 16 digits, a 32-character symbol, amounts of 20 digits and 18
 * decimals, a 64-character client order id, every character of it escaped)
 * is about 330 bytes, 430 pretty-printed with two-space indents: 1,000 of them fit with
 * room to spare. Every other route keeps 64 KiB.
 */
export const BATCH_BODY_LIMIT = 1024 * 1024;

type ItemResult = TradeBatchResponse['results'][number];

/** The same validator every route's body goes through (app.ts sets it), for one trade body. */
const validateTrade = validatorCompiler({ schema: tradeBody, method: 'POST', url: '/trade', httpPart: 'body' });

/** An item's trade body, or the 400 POST /trade would have answered it with. */
function checkItem(item: unknown): { body: z.output<typeof tradeBody> } | { refused: ErrorAnswer } {
  const checked = validateTrade(item) as { error?: Parameters<typeof validationAnswer>[1]; value?: z.output<typeof tradeBody> };
  if (checked.error !== undefined) return { refused: validationAnswer('body', checked.error) };
  return { body: checked.value! };
}

const itemError = ({ status, body }: ErrorAnswer): ItemResult => ({ status, ...body });

export const tradeRoutes: RoutePlugin = async (app, { engine }) => {
  app.post(
    '/trade',
    {
      config: { access: { roles: ['admin', 'trading'] } },
      schema: {
        tags: ['trading'],
        summary: 'Book a trade if the market takes it and the account keeps its initial margin after it',
        body: tradeBody,
        response: { 200: tradeResponse, 400: errorResponse, 401: errorResponse, 403: errorResponse, 404: errorResponse, 409: errorResponse, 422: errorResponse, 503: errorResponse },
      },
    },
    (req) => engine.trading.trade(tradeCommand(req, req.body)),
  );

  app.post(
    '/trades',
    {
      bodyLimit: BATCH_BODY_LIMIT,
      config: { access: { roles: ['admin', 'trading'] } },
      schema: {
        tags: ['trading'],
        summary: 'Book a batch of up to 1,000 trades: one result per trade, in order, each what POST /trade would answer',
        description:
          'Each item is validated, decided and booked as POST /trade would, and its result is that route\'s body with the status it would have used. ' +
          'Items on one account apply in their order; accounts run concurrently. A malformed envelope is a 400 with nothing booked.',
        body: tradeBatchBody,
        response: { 200: tradeBatchResponse, 400: errorResponse, 401: errorResponse, 403: errorResponse, 413: errorResponse, 503: errorResponse },
      },
    },
    async (req, reply) => {
      const items = req.body.trades;
      const results: ItemResult[] = new Array<ItemResult>(items.length);
      const commands: TradeCommand[] = [];
      /** The item each command came from. */
      const itemOf: number[] = [];
      items.forEach((item, i) => {
        const checked = checkItem(item);
        if ('refused' in checked) results[i] = itemError(checked.refused);
        else {
          commands.push(tradeCommand(req, checked.body));
          itemOf.push(i);
        }
      });
      const outcomes = await engine.trading.tradeAll(commands);
      let unavailable = 0;
      outcomes.forEach((outcome, k) => {
        const i = itemOf[k]!;
        if (outcome.status === 'fulfilled') {
          results[i] = { status: 200, ...outcome.value };
          return;
        }
        const answer = errorAnswer(outcome.reason);
        results[i] = itemError(answer);
        if (answer.status === 503) unavailable++;
        else if (answer.status >= 500) req.log.error({ err: outcome.reason as Error, item: i }, 'unhandled error in a batch item');
      });
      if (unavailable > 0) {
        // One line for the batch, not one per item.
        req.log.warn({ items: unavailable }, 'batch items answered 503');
        void reply.header('retry-after', '1');
      }
      const metrics = engine.metrics;
      if (metrics !== null) {
        metrics.tradeBatchItems.observe(items.length);
        for (const r of results) countTrade(metrics, r.status, r.success ? null : r.error.code);
      }
      return { results };
    },
  );
};
