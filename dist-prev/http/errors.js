import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { EngineError } from '../domain/errors.js';
import { MalformedJson } from './json.js';
const STATUS = {
    VALIDATION_ERROR: 400,
    ACCOUNT_NOT_FOUND: 404,
    INSUFFICIENT_MARGIN: 422,
    IDEMPOTENCY_CONFLICT: 409,
    SERVICE_UNAVAILABLE: 503,
    ACCOUNT_BUSY: 503,
};
export const errorBody = (code, message, details) => ({
    success: false,
    error: details ? { code, message, details } : { code, message },
});
export function registerErrorHandling(app) {
    app.setNotFoundHandler((req, reply) => {
        void reply.code(404).send(errorBody('NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`));
    });
    app.setErrorHandler((error, req, reply) => {
        if (hasZodFastifySchemaValidationErrors(error)) {
            const where = error.validationContext ?? 'body';
            const fields = error.validation.flatMap((v) => {
                const path = [where, ...v.instancePath.split('/').filter(Boolean)];
                // An unknown key is named as the field itself, not as its parent object.
                const unknown = v.keyword === 'unrecognized_keys' ? (v.params.keys ?? []) : [];
                if (unknown.length > 0)
                    return unknown.map((key) => ({ field: [...path, key].join('.'), message: 'is not a known field' }));
                return [{ field: path.join('.'), message: v.message ?? 'is invalid' }];
            });
            return reply
                .code(400)
                .send(errorBody('VALIDATION_ERROR', `invalid ${fields.map((f) => f.field).join(', ')}`, { fields }));
        }
        if (error instanceof MalformedJson) {
            return reply.code(400).send(errorBody('VALIDATION_ERROR', error.message, { fields: [{ field: 'body', message: error.message }] }));
        }
        if (error instanceof EngineError) {
            const status = STATUS[error.code];
            if (status >= 500)
                req.log.warn({ code: error.code, cause: error.cause?.message }, error.message);
            if (status === 503)
                void reply.header('retry-after', '1');
            return reply.code(status).send(errorBody(error.code, error.message, error.details));
        }
        // fastify's own 4xx (unsupported media type, body too large, bad URL, …)
        const statusCode = error.statusCode ?? 500;
        if (statusCode >= 400 && statusCode < 500) {
            const code = statusCode === 413 ? 'PAYLOAD_TOO_LARGE' : statusCode === 415 ? 'UNSUPPORTED_MEDIA_TYPE' : 'VALIDATION_ERROR';
            return reply.code(statusCode).send(errorBody(code, error.message));
        }
        req.log.error({ err: error }, 'unhandled error');
        return reply.code(500).send(errorBody('INTERNAL_ERROR', 'internal error'));
    });
}
//# sourceMappingURL=errors.js.map