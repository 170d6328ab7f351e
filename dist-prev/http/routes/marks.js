import { errorResponse, markBody, markResponse } from '../schemas.js';
export const markRoutes = async (app, { engine }) => {
    app.post('/mark-price', {
        schema: {
            tags: ['marks'],
            summary: 'Post a mark price; returns the accounts it liquidated',
            body: markBody,
            response: { 200: markResponse, 400: errorResponse, 503: errorResponse },
        },
    }, (req) => engine.marks.setMark(req.body.symbol, req.body.price));
};
//# sourceMappingURL=marks.js.map