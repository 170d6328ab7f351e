/**
 * Who may do what. Each route declares its `access` in its
 * config; a preHandler built from it checks the key after validation (the
 * order of checks is 400, then 401/403) and before the handler, so a refused
 * request has read and changed nothing. A route that declares nothing is
 * admin-only. With AUTH=off no route checks anything and actors are null.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, RouteOptions } from 'fastify';
import { EngineError } from '../domain/errors.js';
import type { ApiKeys, Principal } from '../services/api-keys.js';
import type { Role } from '../store/api-keys.js';

/** Every role that may read (all GETs but /admin/*). */
export const READERS: readonly Role[] = ['admin', 'operator', 'treasury', 'trading', 'reader'];

export type Access =
  /** No key needed (health, readiness, the API document). */
  | 'public'
  | {
      readonly roles: readonly Role[];
      /**
       * For an `account` key (listed in `roles`), which may act only on its
       * own accounts: where the request names the account ('public': routes
       * about no account, such as the markets). An account key on a request
       * naming no account is refused.
       */
      readonly account?: ((req: FastifyRequest) => number | undefined) | 'public';
    };

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    /** The key behind the request (null with AUTH=off and on public routes). */
    principal: Principal | null;
  }
}

/** The key id to record as the actor of what a request does. */
export const actorOf = (req: FastifyRequest): string | null => req.principal?.keyId ?? null;

const unauthenticated = () =>
  new EngineError('UNAUTHENTICATED', 'send a valid API key as "Authorization: Bearer <key>"');
const forbidden = (why: string) => new EngineError('FORBIDDEN', why);

export function registerAuth(app: FastifyInstance, keys: ApiKeys | null): void {
  app.decorateRequest('principal', null);
  if (keys === null) return;
  app.addHook('onRoute', (route: RouteOptions) => {
    // The OpenAPI document and its UI (registered by @fastify/swagger-ui) are public.
    const access = route.config?.access ?? (route.url.startsWith('/docs') ? 'public' : { roles: ['admin'] as const });
    if (access === 'public') return;
    const check = guard(keys, access);
    const existing = route.preHandler;
    route.preHandler = existing === undefined ? [check] : Array.isArray(existing) ? [check, ...existing] : [check, existing];
  });
}

function guard(keys: ApiKeys, access: Exclude<Access, 'public'>) {
  const roles = new Set<Role>(access.roles);
  const allow = (req: FastifyRequest, principal: Principal | null): EngineError | null => {
    if (principal === null) return unauthenticated();
    if (!roles.has(principal.role)) return forbidden(`a ${principal.role} key may not ${req.method} ${req.routeOptions.url ?? ''}`);
    if (principal.role === 'account' && access.account !== 'public') {
      const accountId = access.account?.(req);
      if (accountId === undefined) return forbidden('an account key may act only on its own accounts; name one');
      if (!principal.accountIds.has(accountId)) return forbidden(`account ${accountId} is not one of this key's accounts`);
    }
    req.principal = principal;
    return null;
  };
  return (req: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void => {
    const found = keys.authenticate(req.headers.authorization);
    if (found instanceof Promise) {
      found.then(
        (principal) => done(allow(req, principal) ?? undefined),
        (error: unknown) => done(error as Error),
      );
      return;
    }
    done(allow(req, found) ?? undefined);
  };
}
