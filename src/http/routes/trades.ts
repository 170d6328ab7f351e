import { actorOf } from '../auth.js';
import { errorResponse, tradeBody, tradeResponse } from '../schemas.js';
import type { RoutePlugin } from './types.js';

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
    (req) =>
      engine.trading.trade({
        accountId: req.body.account_id,
        symbol: req.body.symbol,
        side: req.body.side,
        quantity: req.body.quantity,
        price: req.body.price,
        clientOrderId: req.body.client_order_id ?? null,
        liquidity: req.body.liquidity ?? 'taker',
        actor: actorOf(req),
      }),
  );
};
