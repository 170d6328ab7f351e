import { z } from 'zod';
import {
  DEFAULT_PAGE_LIMIT,
  errorResponse,
  liquidationsQuery,
  liquidationsResponse,
  marginReportQuery,
  marginReportResponse,
} from '../schemas.js';
import { READERS } from '../auth.js';
import { liquidationsBody, marginReportBody } from '../views.js';
import type { RoutePlugin } from './types.js';

export const riskRoutes: RoutePlugin = async (app, { engine }) => {
  app.get(
    '/margin-report',
    {
      config: { access: { roles: READERS } },
      schema: {
        tags: ['risk'],
        summary: 'Every account, riskiest first (highest margin utilisation), paged',
        description: 'Carries an ETag that changes whenever any account or mark changes; send If-None-Match to get 304 when nothing did.',
        querystring: marginReportQuery,
        response: {
          200: marginReportResponse,
          304: z.null().describe('Not modified since the ETag sent'),
          400: errorResponse,
          401: errorResponse,
          403: errorResponse,
          503: errorResponse,
        },
      },
    },
    async (req, reply) => {
      const query = { limit: req.query.limit ?? DEFAULT_PAGE_LIMIT, cursor: req.query.cursor ?? null, status: req.query.status ?? null };
      const etag = await engine.report.etag(query);
      void reply.header('etag', etag).header('cache-control', 'no-cache');
      if (req.headers['if-none-match'] === etag) return reply.code(304).send(null);
      return marginReportBody(await engine.report.page(query));
    },
  );

  app.get(
    '/liquidations',
    {
      // An account key must name one of its accounts.
      config: { access: { roles: [...READERS, 'account'], account: (req) => (req.query as { account_id?: number }).account_id } },
      schema: {
        tags: ['risk'],
        summary: 'Liquidation records, newest first',
        querystring: liquidationsQuery,
        response: { 200: liquidationsResponse, 400: errorResponse, 401: errorResponse, 403: errorResponse, 503: errorResponse },
      },
    },
    async (req) => liquidationsBody(await engine.accounts.liquidations(req.query.account_id ?? null, req.query.limit ?? DEFAULT_PAGE_LIMIT, req.query.cursor ?? null)),
  );
};
