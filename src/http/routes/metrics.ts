import type { FastifyInstance } from 'fastify';
import type { Metrics } from '../../metrics.js';
import { READERS } from '../auth.js';
import type { RoutePlugin } from './types.js';

/** Counts every answer by route (its pattern, so ids do not explode the label set) and status. Call on the root app. */
export function recordRequests(app: FastifyInstance, metrics: Metrics): void {
  // Each (method, route, status) child is looked up once and kept: prom-client
  // otherwise hashes the label object on every observation, which showed as a
  // few per cent of the trade route's CPU under load.
  const counters = new Map<string, { inc(): void }>();
  const timers = new Map<string, { observe(value: number): void }>();
  app.addHook('onResponse', (req, reply, done) => {
    const route = req.routeOptions.url ?? 'unmatched';
    const status = reply.statusCode;
    const key = `${req.method} ${route}`;
    let timer = timers.get(key);
    if (timer === undefined) timers.set(key, (timer = metrics.requestSeconds.labels({ method: req.method, route })));
    timer.observe(reply.elapsedTime / 1000);
    const counterKey = `${key} ${status}`;
    let counter = counters.get(counterKey);
    if (counter === undefined) counters.set(counterKey, (counter = metrics.requests.labels({ method: req.method, route, status })));
    counter.inc();
    if (route === '/trade' && req.method === 'POST') {
      if (status === 200) metrics.tradesBooked.inc();
      else metrics.tradesRejected.inc({ code: reply.errorCode ?? String(status) });
    } else if (route === '/mark-price' && req.method === 'POST') {
      metrics.markTickSeconds.observe({ outcome: status === 200 ? 'complete' : status === 202 ? 'pending' : 'error' }, reply.elapsedTime / 1000);
    }
    done();
  });
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
