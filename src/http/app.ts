/**
 * Builds the fastify app around an engine. Tests call buildApp() and inject;
 * only main.ts listens.
 */
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { jsonSchemaTransform, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Engine } from '../engine.js';
import { clientErrorHandler, frameworkErrorHandler, registerErrorHandling } from './errors.js';
import { registerJsonParser } from './json.js';
import { accountRoutes } from './routes/accounts.js';
import { dashboardRoutes } from './routes/dashboard.js';
import { healthRoutes } from './routes/health.js';
import { markRoutes } from './routes/marks.js';
import { riskRoutes } from './routes/risk.js';
import { insuranceRoutes } from './routes/insurance.js';
import { previewRoutes } from './routes/preview.js';
import { adminRoutes } from './routes/admin.js';
import { marketRoutes } from './routes/markets.js';
import { metricsRoutes, recordRequests } from './routes/metrics.js';
import { registerAuth } from './auth.js';
import { tradeRoutes } from './routes/trades.js';
import { eventRoutes } from './routes/events.js';
import { fundingRoutes } from './routes/funding.js';

export interface AppOptions {
  readonly logger?: FastifyBaseLogger;
  /** Serve the OpenAPI document and UI at /docs (default true). */
  readonly docs?: boolean;
  /** How long a request may take to arrive, headers and body (default: the engine's REQUEST_TIMEOUT_MS). */
  readonly requestTimeoutMs?: number;
  /** Most open connections (default: the engine's MAX_CONNECTIONS). */
  readonly maxConnections?: number;
}

export type App = FastifyInstance;

export async function buildApp(engine: Engine, options: AppOptions = {}): Promise<App> {
  const requestTimeoutMs = options.requestTimeoutMs ?? engine.config.requestTimeoutMs;
  const app = Fastify({
    ...(options.logger ? { loggerInstance: options.logger } : { logger: false }),
    bodyLimit: 64 * 1024,
    return503OnClosing: true,
    // At info level the log is business events (liquidations, market and key
    // changes, rebuilds), one line each; requests are one line each at debug
    // (see below), not fastify's two at info.
    logController: new LogController({ disableRequestLogging: true }),
    // A request (headers and body) must arrive within requestTimeoutMs, or it
    // is answered 408 and closed. node checks for late requests only every
    // connectionsCheckingInterval (30 s by default): check often enough that
    // the answer comes at most ~1 s late. Idle keep-alive connections are not
    // requests; keepAliveTimeout still governs them.
    requestTimeout: requestTimeoutMs,
    http: {
      requestTimeout: requestTimeoutMs,
      headersTimeout: requestTimeoutMs,
      connectionsCheckingInterval: Math.min(1000, Math.max(50, Math.floor(requestTimeoutMs / 4))),
    },
    // 400/408/413/431 raised by node's HTTP layer, in the engine's error shape.
    clientErrorHandler: clientErrorHandler(requestTimeoutMs, options.logger),
    // 400 bad %-escape, 414 path parameter too long, raised by the router; same shape.
    frameworkErrors: frameworkErrorHandler,
  });
  // Further connections are closed as soon as they are accepted.
  app.server.maxConnections = options.maxConnections ?? engine.config.maxConnections;
  app.setValidatorCompiler(validatorCompiler);
  // Handlers build their responses from typed objects of strings (checked by
  // the type provider at compile time); plain JSON.stringify is all they need.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  registerJsonParser(app);
  registerErrorHandling(app);
  registerAuth(app, engine.apiKeys);
  app.addHook('onResponse', (req, reply, done) => {
    // The route's pattern, not the URL: ids stay out of the line, and so does anything a client pasted into a path.
    // Built only when debug lines are written: at info this costs a level check per request.
    if (req.log.level === 'debug' || req.log.level === 'trace') {
      req.log.debug({ method: req.method, route: req.routeOptions.url ?? 'unmatched', status: reply.statusCode, ms: reply.elapsedTime }, 'request');
    }
    done();
  });
  if (engine.metrics) recordRequests(app, engine.metrics);

  if (options.docs ?? true) {
    await app.register(swagger, {
      openapi: {
        info: {
          title: 'Margin engine',
          version: '0.1.0',
          description:
            'Cross-margin risk engine for perpetual futures. Amounts in responses are decimal strings; ' +
            'amounts in requests may be JSON numbers or decimal strings. Every route but /health, /ready, /dashboard and /docs ' +
            'needs "Authorization: Bearer <key>".',
        },
        components: { securitySchemes: { apiKey: { type: 'http', scheme: 'bearer' } } },
        security: [{ apiKey: [] }],
      },
      transform: jsonSchemaTransform,
    });
    await app.register(swaggerUi, { routePrefix: '/docs' });
  }

  const typed = app.withTypeProvider<ZodTypeProvider>();
  await typed.register(healthRoutes, { engine });
  await typed.register(accountRoutes, { engine });
  await typed.register(tradeRoutes, { engine });
  await typed.register(markRoutes, { engine });
  await typed.register(fundingRoutes, { engine });
  await typed.register(eventRoutes, { engine });
  await typed.register(riskRoutes, { engine });
  await typed.register(insuranceRoutes, { engine });
  await typed.register(previewRoutes, { engine });
  await typed.register(marketRoutes, { engine });
  await typed.register(adminRoutes, { engine });
  await typed.register(metricsRoutes, { engine });
  await typed.register(dashboardRoutes, { engine });
  return app;
}
