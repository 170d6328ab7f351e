import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Engine } from '../../engine.js';

export type RoutePlugin = FastifyPluginAsync<{ engine: Engine }, import('fastify').RawServerDefault, ZodTypeProvider>;
