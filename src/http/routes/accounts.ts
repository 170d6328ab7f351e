import { actorOf, READERS, type Access } from '../auth.js';
import { DEFAULT_PAGE_LIMIT, accountIdParams, amountBody, cashResponse, errorResponse, pageQuery, positionsResponse, statementQuery, statementResponse, tradesResponse } from '../schemas.js';
import { positionsBody, statementBody, tradesBody } from '../views.js';
import type { RoutePlugin } from './types.js';

const errors = { 400: errorResponse, 401: errorResponse, 403: errorResponse, 404: errorResponse, 422: errorResponse, 503: errorResponse };

const cash: Access = { roles: ['admin', 'treasury'] };
/** Reads about one account: every reading role, and an account key on its own accounts. */
const ownAccount: Access = { roles: [...READERS, 'account'], account: (req) => (req.params as { account_id: number }).account_id };

export const accountRoutes: RoutePlugin = async (app, { engine }) => {
  app.post(
    '/accounts/:account_id/deposit',
    {
      config: { access: cash },
      schema: { tags: ['accounts'], summary: 'Deposit cash (creates the account)', params: accountIdParams, body: amountBody, response: { 200: cashResponse, ...errors } },
    },
    (req) => engine.trading.deposit(req.params.account_id, req.body.amount, actorOf(req)),
  );

  app.post(
    '/accounts/:account_id/withdraw',
    {
      config: { access: cash },
      schema: { tags: ['accounts'], summary: 'Withdraw cash, if margin allows', params: accountIdParams, body: amountBody, response: { 200: cashResponse, ...errors } },
    },
    (req) => engine.trading.withdraw(req.params.account_id, req.body.amount, actorOf(req)),
  );

  app.get(
    '/positions/:account_id',
    {
      config: { access: ownAccount },
      schema: { tags: ['accounts'], summary: 'Balance, margin and positions at current marks', params: accountIdParams, response: { 200: positionsResponse, ...errors } },
    },
    async (req) => {
      const m = await engine.accounts.positions(req.params.account_id);
      return positionsBody(req.params.account_id, m, m.liquidationPrices);
    },
  );

  app.get(
    '/trades/:account_id',
    {
      config: { access: ownAccount },
      schema: {
        tags: ['accounts'],
        summary: 'Trade history, newest first',
        params: accountIdParams,
        querystring: pageQuery,
        response: { 200: tradesResponse, ...errors },
      },
    },
    async (req) => tradesBody(await engine.accounts.trades(req.params.account_id, req.query.limit ?? DEFAULT_PAGE_LIMIT, req.query.cursor ?? null)),
  );

  app.get(
    '/accounts/:account_id/ledger',
    {
      config: { access: ownAccount },
      schema: {
        tags: ['accounts'],
        summary: "The account's ledger, newest first: trades, cash, funding, liquidation fees, insurance",
        params: accountIdParams,
        querystring: statementQuery,
        response: { 200: statementResponse, ...errors },
      },
    },
    async (req) => {
      const { limit, cursor, kinds } = req.query;
      return statementBody(await engine.accounts.statement(req.params.account_id, limit ?? DEFAULT_PAGE_LIMIT, cursor ?? null, kinds ?? null));
    },
  );
};
