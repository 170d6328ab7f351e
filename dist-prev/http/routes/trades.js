import { errorResponse, tradeBody, tradeResponse } from '../schemas.js';
export const tradeRoutes = async (app, { engine }) => {
    app.post('/trade', {
        schema: {
            tags: ['trading'],
            summary: 'Book a trade if the account keeps its initial margin after it',
            body: tradeBody,
            response: { 200: tradeResponse, 400: errorResponse, 409: errorResponse, 422: errorResponse, 503: errorResponse },
        },
    }, (req) => engine.trading.trade({
        accountId: req.body.account_id,
        symbol: req.body.symbol,
        side: req.body.side,
        quantity: req.body.quantity,
        price: req.body.price,
        clientOrderId: req.body.client_order_id ?? null,
    }));
};
//# sourceMappingURL=trades.js.map