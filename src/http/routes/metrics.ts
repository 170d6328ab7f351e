import type { FastifyInstance } from 'fastify';
import type { Metrics } from '../../metrics.js';
import { READERS } from '../auth.js';
import type { RoutePlugin } from './types.js';

/**
 * Counts every answer by route (its pattern, so ids do not explode the label
 * set) and status, and times it. Call on the root app. Per answer: two Map
 * lookups on strings fastify keeps, a bucket search and a few additions
 * (see RequestSeries).
 */
export function recordRequests(app: FastifyInstance, metrics: Metrics): void {
  app.addHook('onResponse', (req, reply, done) => {
    const route = req.routeOptions.url ?? 'unmatched';
    const status = reply.statusCode;
    const seconds = reply.elapsedTime / 1000;
    metrics.http.of(req.method, route).observe(seconds, status);
    if (route === '/trade' && req.method === 'POST') {
      countTrade(metrics, status, reply.errorCode);
    } else if (route === '/mark-price' && req.method === 'POST') {
      metrics.markTickSeconds.observe({ outcome: status === 200 ? 'complete' : status === 202 ? 'pending' : 'error' }, seconds);
    }
    done();
  });
}

/**
 * One trade's answer in the trade counters: booked (200), or rejected by its
 * error code. POST /trade counts its answer, POST /trades each item's.
 */
export function countTrade(metrics: Metrics, status: number, code: string | null): void {
  if (status === 200) metrics.tradesBooked.inc();
  else metrics.tradesRejected.inc({ code: code ?? String(status) });
}

export const metricsRoutes: RoutePlugin = async (app, { engine }) => {
  const metrics = engine.metrics;
  if (metrics === null) return;
  app.get(
    '/metrics',
    {
      config: { access: { roles: READERS } },
      schema: { tags: ['operations'], summary: 'Prometheus metrics (text format)', hide: false },
    },
    async (_req, reply) => {
      const text = await metrics.registry.metrics();
      return reply.header('content-type', metrics.registry.contentType).send(text);
    },
  );
};
