import { EngineError } from '../../domain/errors.js';
import { actorOf } from '../auth.js';
import { errorResponse, keyBody, keyCreatedResponse, keyIdParams, keyResponse, keysResponse } from '../schemas.js';
import type { RoutePlugin } from './types.js';

const errors = { 400: errorResponse, 401: errorResponse, 403: errorResponse, 404: errorResponse, 503: errorResponse };
const adminOnly = { access: { roles: ['admin'] as const } };

export const adminRoutes: RoutePlugin = async (app, { engine }) => {
  const keys = () => {
    if (engine.apiKeys === null) throw new EngineError('VALIDATION_ERROR', 'keys are not used with AUTH=off');
    return engine.apiKeys;
  };

  app.post(
    '/admin/keys',
    {
      config: adminOnly,
      schema: { tags: ['admin'], summary: 'Create an API key (its secret is shown only in this answer)', body: keyBody, response: { 201: keyCreatedResponse, ...errors } },
    },
    async (req, reply) => {
      const { view, key } = await keys().create({ name: req.body.name, role: req.body.role, accountIds: req.body.account_ids ?? [] }, actorOf(req));
      return reply.code(201).send({ key_id: view.key_id, key, name: view.name, role: view.role, account_ids: view.account_ids, created_at: view.created_at });
    },
  );

  app.get(
    '/admin/keys',
    { config: adminOnly, schema: { tags: ['admin'], summary: 'Every API key, without secrets', response: { 200: keysResponse, ...errors } } },
    async () => ({ keys: await keys().list() }),
  );

  app.delete(
    '/admin/keys/:key_id',
    {
      config: adminOnly,
      schema: {
        tags: ['admin'],
        summary: 'Revoke a key: refused by every engine process within a second',
        params: keyIdParams,
        response: { 200: keyResponse, ...errors },
      },
    },
    (req) => keys().revoke(req.params.key_id, actorOf(req)),
  );
};
