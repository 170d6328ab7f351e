/**
 * Builds the fastify app around an engine. Tests call buildApp() and inject;
 * only main.ts listens.
 */
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify from 'fastify';
import { jsonSchemaTransform, validatorCompiler } from 'fastify-type-provider-zod';
import { registerErrorHandling } from './errors.js';
import { registerJsonParser } from './json.js';
import { accountRoutes } from './routes/accounts.js';
import { healthRoutes } from './routes/health.js';
import { markRoutes } from './routes/marks.js';
import { riskRoutes } from './routes/risk.js';
import { tradeRoutes } from './routes/trades.js';
export async function buildApp(engine, options = {}) {
    const app = Fastify({
        ...(options.logger ? { loggerInstance: options.logger } : { logger: false }),
        bodyLimit: 64 * 1024,
        return503OnClosing: true,
    });
    app.setValidatorCompiler(validatorCompiler);
    // Handlers build their responses from typed objects of strings (checked by
    // the type provider at compile time); plain JSON.stringify is all they need.
    app.setSerializerCompiler(() => (data) => JSON.stringify(data));
    registerJsonParser(app);
    registerErrorHandling(app);
    if (options.docs ?? true) {
        await app.register(swagger, {
            openapi: {
                info: {
                    title: 'Margin engine',
                    version: '0.1.0',
                    description: 'Cross-margin risk engine for perpetual futures. Amounts in responses are decimal strings; ' +
                        'amounts in requests may be JSON numbers or decimal strings.',
                },
            },
            transform: jsonSchemaTransform,
        });
        await app.register(swaggerUi, { routePrefix: '/docs' });
    }
    const typed = app.withTypeProvider();
    await typed.register(healthRoutes, { engine });
    await typed.register(accountRoutes, { engine });
    await typed.register(tradeRoutes, { engine });
    await typed.register(markRoutes, { engine });
    await typed.register(riskRoutes, { engine });
    return app;
}
//# sourceMappingURL=app.js.map