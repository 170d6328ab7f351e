import { actorOf, READERS, type Access } from '../auth.js';
import { DEFAULT_PAGE_LIMIT, errorResponse, marketBody, marketHistoryResponse, marketResponse, marketsResponse, pageQuery, symbolParams } from '../schemas.js';
import type { ParamsJson } from '../../store/markets.js';
import type { RoutePlugin } from './types.js';

const errors = { 400: errorResponse, 401: errorResponse, 403: errorResponse, 404: errorResponse, 503: errorResponse };
/** Markets are public to every key, account keys included. */
const anyKey: Access = { roles: [...READERS, 'account'], account: 'public' };

export const marketRoutes: RoutePlugin = async (app, { engine }) => {
  app.put(
    '/markets/:symbol',
    {
      config: { access: { roles: ['admin', 'operator'] } },
      schema: {
        tags: ['markets'],
        summary: 'List a market, or change its status and parameters',
        description: '200: applied. 202: committed; Redis takes it within a second of answering again. Any error: nothing was changed.',
        params: symbolParams,
        body: marketBody,
        response: { 200: marketResponse, 202: marketResponse, ...errors },
      },
    },
    async (req, reply) => {
      const { status, ...params } = req.body;
      const defined = Object.fromEntries(Object.entries(params).filter(([, v]) => v !== undefined)) as ParamsJson;
      const result = await engine.markets.put(req.params.symbol, status, defined, actorOf(req));
      return reply.code(result.applied ? 200 : 202).send(result.view);
    },
  );

  app.get(
    '/markets',
    { config: { access: anyKey }, schema: { tags: ['markets'], summary: 'Every listed market', response: { 200: marketsResponse, ...errors } } },
    () => engine.markets.list(),
  );

  app.get(
    '/markets/:symbol',
    {
      config: { access: anyKey },
      schema: {
        tags: ['markets'],
        summary: 'A market: parameters, mark, open interest, holders, fees collected',
        params: symbolParams,
        response: { 200: marketResponse, ...errors },
      },
    },
    (req) => engine.markets.get(req.params.symbol),
  );

  app.get(
    '/markets/:symbol/history',
    {
      config: { access: anyKey },
      schema: {
        tags: ['markets'],
        summary: "The market's listing, marks and parameter changes, newest first, each with its actor",
        params: symbolParams,
        querystring: pageQuery,
        response: { 200: marketHistoryResponse, ...errors },
      },
    },
    (req) => engine.markets.history(req.params.symbol, req.query.limit ?? DEFAULT_PAGE_LIMIT, req.query.cursor ?? null),
  );
};
