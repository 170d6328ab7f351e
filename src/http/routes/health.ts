import { errorBody } from '../errors.js';
import { errorResponse, healthResponse, readyResponse } from '../schemas.js';
import type { RoutePlugin } from './types.js';

export const healthRoutes: RoutePlugin = async (app, { engine }) => {
  app.get('/health', { config: { access: 'public' }, schema: { tags: ['health'], summary: 'Liveness', response: { 200: healthResponse } } }, async () => ({
    status: 'ok' as const,
  }));

  app.get(
    '/ready',
    { config: { access: 'public' }, schema: { tags: ['health'], summary: 'Readiness: Redis and PostgreSQL answer', response: { 200: readyResponse, 503: errorResponse } } },
    async (_req, reply) => {
      const state = await engine.readiness();
      if (state.redis && state.postgres) return { status: 'ready' as const, redis: 'up' as const, postgres: 'up' as const };
      const details = { redis: state.redis ? 'up' : 'down', postgres: state.postgres ? 'up' : 'down' };
      return reply.code(503).send(errorBody('NOT_READY', 'a dependency is unavailable', details));
    },
  );
};
