import { READERS, actorOf } from '../auth.js';
import { amountBody, DEFAULT_PAGE_LIMIT, errorResponse, insuranceFundResponse, insuranceHistoryResponse, pageQuery } from '../schemas.js';
import { fundBody, fundHistoryBody } from '../views.js';
import type { RoutePlugin } from './types.js';

export const insuranceRoutes: RoutePlugin = async (app, { engine }) => {
  app.get(
    '/insurance-fund',
    {
      config: { access: { roles: [...READERS, 'account'], account: 'public' } },
      schema: {
        tags: ['risk'],
        summary: 'The insurance fund: balance, fees received, deposits, shortfalls paid and the bad debt beyond it',
        response: { 200: insuranceFundResponse, 401: errorResponse, 403: errorResponse, 503: errorResponse },
      },
    },
    async () => fundBody(await engine.insurance.fund()),
  );

  app.get(
    '/insurance-fund/history',
    {
      config: { access: { roles: READERS } },
      schema: {
        tags: ['risk'],
        summary: "The fund's movements (fees, deposits, shortfalls paid), newest first",
        querystring: pageQuery,
        response: { 200: insuranceHistoryResponse, 400: errorResponse, 401: errorResponse, 403: errorResponse, 503: errorResponse },
      },
    },
    async (req) => fundHistoryBody(await engine.insurance.history(req.query.limit ?? DEFAULT_PAGE_LIMIT, req.query.cursor ?? null)),
  );

  app.post(
    '/insurance-fund/deposit',
    {
      config: { access: { roles: ['admin', 'treasury'] } },
      schema: {
        tags: ['risk'],
        summary: 'A treasury deposit into the insurance fund',
        body: amountBody,
        response: { 200: insuranceFundResponse, 400: errorResponse, 401: errorResponse, 403: errorResponse, 503: errorResponse },
      },
    },
    async (req) => fundBody(await engine.insurance.deposit(req.body.amount, actorOf(req))),
  );
};
