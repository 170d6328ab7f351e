import type { FastifyRequest } from 'fastify';
import type { z } from 'zod';
import type { TradeCommand } from '../../services/trading.js';
import { actorOf } from '../auth.js';
import { errorResponse, tradeBody, tradeResponse } from '../schemas.js';
import type { RoutePlugin } from './types.js';

/** The command a trade body asks for (POST /trade and POST /trade/preview take the same body). */
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
};
