import { errorBody } from '../errors.js';
import { errorResponse, healthResponse, readyResponse } from '../schemas.js';
export const healthRoutes = async (app, { engine }) => {
    app.get('/health', { schema: { tags: ['health'], summary: 'Liveness', response: { 200: healthResponse } } }, async () => ({
        status: 'ok',
    }));
    app.get('/ready', { schema: { tags: ['health'], summary: 'Readiness: Redis and PostgreSQL answer', response: { 200: readyResponse, 503: errorResponse } } }, async (_req, reply) => {
        const state = await engine.readiness();
        if (state.redis && state.postgres)
            return { status: 'ready', redis: 'up', postgres: 'up' };
        const details = { redis: state.redis ? 'up' : 'down', postgres: state.postgres ? 'up' : 'down' };
        return reply.code(503).send(errorBody('NOT_READY', 'a dependency is unavailable', details));
    });
};
//# sourceMappingURL=health.js.map