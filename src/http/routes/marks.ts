import { actorOf } from '../auth.js';
import { errorResponse, markBody, markResponse } from '../schemas.js';
import type { RoutePlugin } from './types.js';

export const markRoutes: RoutePlugin = async (app, { engine }) => {
  app.post(
    '/mark-price',
    {
      config: { access: { roles: ['admin', 'operator'] } },
      schema: {
        tags: ['marks'],
        summary: 'Post a mark price (lists an unknown symbol); returns the accounts it liquidated',
        description:
          '200: committed and swept. 202: committed, but a store failed during the liquidation sweep; recovery finishes it. ' +
          'Any error: nothing was changed anywhere.',
        body: markBody,
        response: { 200: markResponse, 202: markResponse, 400: errorResponse, 401: errorResponse, 403: errorResponse, 422: errorResponse, 503: errorResponse },
      },
    },
    async (req, reply) => {
      const result = await engine.marks.setMark(req.body.symbol, req.body.price, { actor: actorOf(req), force: req.body.force ?? false });
      return reply.code(result.sweep === 'complete' ? 200 : 202).send(result);
    },
  );
};
