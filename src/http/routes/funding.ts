import { actorOf } from '../auth.js';
import { errorResponse, fundingBody, fundingResponse } from '../schemas.js';
import type { RoutePlugin } from './types.js';

export const fundingRoutes: RoutePlugin = async (app, { engine }) => {
  app.post(
    '/funding',
    {
      config: { access: { roles: ['admin', 'operator'] } },
      schema: {
        tags: ['marks'],
        summary: 'Pay a funding event: every holder of the symbol pays quantity × mark × rate (longs pay shorts when rate > 0)',
        description:
          'Idempotent by funding_id: the same id, symbol and rate answer the first result; any other use of the id is 409 FUNDING_CONFLICT. ' +
          'Accounts the payments put under maintenance are liquidated before the answer.',
        body: fundingBody,
        response: { 200: fundingResponse, 400: errorResponse, 401: errorResponse, 403: errorResponse, 404: errorResponse, 409: errorResponse, 422: errorResponse, 503: errorResponse },
      },
    },
    (req) => engine.funding.fund(req.body.symbol, req.body.rate, req.body.funding_id, actorOf(req)),
  );
};
