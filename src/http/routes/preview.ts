import { errorResponse, previewResponse, tradeBody } from '../schemas.js';
import { accountFigures } from '../views.js';
import { tradeCommand } from './trades.js';
import type { RoutePlugin } from './types.js';

export const previewRoutes: RoutePlugin = async (app, { engine }) => {
  app.post(
    '/trade/preview',
    {
      config: { access: { roles: ['admin', 'trading', 'account'], account: (req) => (req.body as { account_id?: number } | undefined)?.account_id } },
      schema: {
        tags: ['trading'],
        summary: 'What POST /trade would decide now, and the account it would leave; books nothing',
        description:
          'A trade POST /trade would refuse (404, 409, 422) answers 200 with accepted: false, its error, and the account unchanged. Malformed input (400) and auth (401, 403) stay errors.',
        body: tradeBody,
        response: { 200: previewResponse, 400: errorResponse, 401: errorResponse, 403: errorResponse, 503: errorResponse },
      },
    },
    async (req) => {
      const p = await engine.trading.preview(tradeCommand(req, req.body));
      return {
        accepted: p.accepted,
        ...(p.error ? { error: { code: p.error.code, message: p.error.message, ...(p.error.details ? { details: p.error.details } : {}) } } : {}),
        fee: p.fee.toString(),
        after: accountFigures(p.after, p.liquidationPrices),
      };
    },
  );
};
