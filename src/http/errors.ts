/**
 * One error shape for every failure: {success: false, error: {code, message, details?}}.
 * Internals of a 5xx never reach the client.
 */
import { maxHeaderSize, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyBaseLogger, FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifySchemaValidationError } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { EngineError, type ErrorCode } from '../domain/errors.js';
import { DuplicateKey, MalformedJson } from './json.js';

const STATUS: Record<ErrorCode, number> = {
  VALIDATION_ERROR: 400,
  ACCOUNT_NOT_FOUND: 404,
  INSUFFICIENT_MARGIN: 422,
  IDEMPOTENCY_CONFLICT: 409,
  SERVICE_UNAVAILABLE: 503,
  ACCOUNT_BUSY: 503,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  KEY_NOT_FOUND: 404,
  MARKET_NOT_FOUND: 404,
  MARKET_HALTED: 422,
  MARKET_REDUCE_ONLY: 422,
  PRICE_OUT_OF_BAND: 422,
  MARK_MOVE_TOO_LARGE: 422,
  NO_MARK_PRICE: 422,
  FUNDING_CONFLICT: 409,
};

export interface ErrorBody {
  success: false;
  error: { code: string; message: string; details?: Record<string, unknown> };
}

/**
 * Client text echoed in an error (an unknown key's name, a URL, a parser's
 * message quoting the body) is cut to at most `max` characters, the cut
 * marked with '…', so a 60 KB key cannot make a 120 KB error.
 */
export function clip(text: string, max = 200): string {
  if (text.length <= max) return text;
  let end = max - 1;
  // Do not split a surrogate pair.
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${text.slice(0, end)}…`;
}

/** Most entries a validation error's details.fields lists (a body may name thousands of unknown keys). */
const MAX_FIELDS = 20;

export const errorBody = (code: string, message: string, details?: Record<string, unknown>): ErrorBody => ({
  success: false,
  error: details ? { code, message, details } : { code, message },
});

declare module 'fastify' {
  interface FastifyReply {
    /** The error code sent, when the answer is an error. */
    errorCode: string | null;
  }
}

/** An error's answer: the HTTP status and the body. */
export interface ErrorAnswer {
  readonly status: number;
  readonly body: ErrorBody;
}

/**
 * The 400 for a body that fails its zod schema (`where`: 'body', 'params',
 * …): each issue named as a field, unknown keys by their own name.
 */
export function validationAnswer(where: string, validation: readonly FastifySchemaValidationError[]): ErrorAnswer {
  const fields = validation.flatMap((v) => {
    const path = [where, ...v.instancePath.split('/').filter(Boolean)];
    // An unknown key is named as the field itself, not as its parent object.
    const unknown = v.keyword === 'unrecognized_keys' ? ((v.params as { keys?: string[] }).keys ?? []) : [];
    if (unknown.length > 0) return unknown.map((key) => ({ field: clip([...path, key].join('.')), message: 'is not a known field' }));
    return [{ field: clip(path.join('.')), message: clip(v.message ?? 'is invalid') }];
  });
  const shown = fields.slice(0, MAX_FIELDS);
  const more = fields.length - shown.length;
  const message = `invalid ${clip(shown.map((f) => f.field).join(', '))}${more > 0 ? ` and ${more} more` : ''}`;
  return { status: 400, body: errorBody('VALIDATION_ERROR', message, { fields: shown }) };
}

/**
 * The status and body any error is answered with: the one mapping behind
 * every route's error answer and each item of POST /trades. 5xx internals
 * stay out of the body.
 */
export function errorAnswer(error: unknown): ErrorAnswer {
  if (hasZodFastifySchemaValidationErrors(error)) return validationAnswer(error.validationContext ?? 'body', error.validation);
  if (error instanceof DuplicateKey) {
    const message = `duplicate key "${clip(error.key)}" in the JSON body`;
    return { status: 400, body: errorBody('VALIDATION_ERROR', message, { fields: [{ field: clip(error.field), message: error.reason }] }) };
  }
  if (error instanceof MalformedJson) {
    const message = clip(error.message);
    return { status: 400, body: errorBody('VALIDATION_ERROR', message, { fields: [{ field: clip(error.field), message: clip(error.reason) }] }) };
  }
  if (error instanceof EngineError) return { status: STATUS[error.code], body: errorBody(error.code, error.message, error.details) };
  // fastify's own 4xx (unsupported media type, body too large, bad URL, …)
  const statusCode = (error as FastifyError | null)?.statusCode ?? 500;
  if (statusCode >= 400 && statusCode < 500) {
    const code = statusCode === 413 ? 'PAYLOAD_TOO_LARGE' : statusCode === 415 ? 'UNSUPPORTED_MEDIA_TYPE' : 'VALIDATION_ERROR';
    // Their messages may quote the request (a content type, a URL): clipped.
    return { status: statusCode, body: errorBody(code, clip((error as Error).message)) };
  }
  return { status: 500, body: errorBody('INTERNAL_ERROR', 'internal error') };
}

export function registerErrorHandling(app: FastifyInstance): void {
  app.decorateReply('errorCode', null);
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send(errorBody('NOT_FOUND', `no route ${req.method} ${clip(req.url.split('?')[0] ?? '')}`));
  });

  app.setErrorHandler((error: FastifyError, req, reply) => {
    const { status, body } = errorAnswer(error);
    if (error instanceof EngineError) {
      if (status >= 500) req.log.warn({ code: error.code, cause: (error.cause as Error | undefined)?.message }, error.message);
      if (status === 503) void reply.header('retry-after', '1');
      if (status === 401) void reply.header('www-authenticate', 'Bearer');
    } else if (status === 500) {
      req.log.error({ err: error }, 'unhandled error');
    }
    // The code goes on the reply too, for the metrics (trades rejected by code).
    reply.errorCode = body.error.code;
    return reply.code(status).send(body);
  });
}

/**
 * fastify's frameworkErrors: what its router refuses before any route is
 * chosen, in the one error shape (fastify's default has its own shape and
 * echoes the whole URL):
 *
 *   400 BAD_REQUEST    a %-escape in the path that does not decode
 *   414 URI_TOO_LONG   a path parameter over fastify's maxParamLength (100)
 */
export function frameworkErrorHandler(error: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
  const url = clip(req.url.split('?')[0] ?? '');
  if (error.code === 'FST_ERR_BAD_URL') {
    void reply.code(400).send(errorBody('BAD_REQUEST', `malformed URL (an escape does not decode): ${url}`));
  } else if (error.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    void reply.code(414).send(errorBody('URI_TOO_LONG', `a path parameter is too long: ${url}`));
  } else {
    req.log.error({ err: error }, 'router error');
    void reply.code(500).send(errorBody('INTERNAL_ERROR', 'internal error'));
  }
}

/** How long a refused connection may stay half-open after its answer, for the client to read it. */
const LINGER_MS = 1000;

/**
 * fastify's clientErrorHandler: errors node's HTTP layer raises before a
 * request reaches fastify, answered in the one error shape on the raw socket
 * (`Connection: close`), which is then closed; nothing more is read from it.
 *
 *   400 BAD_REQUEST        the parser refused the request line or headers
 *   408 REQUEST_TIMEOUT    headers and body not in within REQUEST_TIMEOUT_MS
 *   413 PAYLOAD_TOO_LARGE  chunk extensions over node's limit
 *   431 HEADERS_TOO_LARGE  request line and headers over node's limit
 *
 * A broken HTTP message is BAD_REQUEST, not VALIDATION_ERROR: there is no
 * request yet, so no field that VALIDATION_ERROR's details.fields could name.
 *
 * The close lingers: the answer and a FIN go out at once, and the socket is
 * destroyed when the client closes or after LINGER_MS. Destroying at once
 * (node's and fastify's default) resets a connection whose client is still
 * sending (an oversized header block), and the reset can discard the answer
 * before the client reads it.
 */
export function clientErrorHandler(requestTimeoutMs: number, log?: FastifyBaseLogger) {
  const answered = new WeakSet<Socket>();
  return (error: Error & { code?: string; reason?: unknown }, socket: Socket): void => {
    // A reset connection has nobody to answer; a refused one has been answered
    // (its parser repeats the error on every later chunk, a timed-out one may
    // be reported again by the next check).
    if (error.code === 'ECONNRESET' || socket.destroyed || answered.has(socket)) return;
    answered.add(socket);
    let status: number;
    let body: ErrorBody;
    switch (error.code) {
      case 'ERR_HTTP_REQUEST_TIMEOUT':
        status = 408;
        body = errorBody('REQUEST_TIMEOUT', `request headers and body must arrive within ${requestTimeoutMs} ms`);
        break;
      case 'HPE_HEADER_OVERFLOW':
        status = 431;
        body = errorBody('HEADERS_TOO_LARGE', `request line and headers exceed ${maxHeaderSize} bytes`);
        break;
      case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
        status = 413;
        body = errorBody('PAYLOAD_TOO_LARGE', 'chunk extensions too large');
        break;
      default: {
        // llhttp's reason is its own fixed text ("Invalid method encountered"), not the client's.
        const reason = typeof error.reason === 'string' && error.reason !== '' ? `: ${clip(error.reason)}` : '';
        status = 400;
        body = errorBody('BAD_REQUEST', `malformed HTTP request${reason}`);
      }
    }
    log?.debug({ code: error.code, status }, 'refused a malformed or slow request');
    // As node does: answer only if no response of an earlier (pipelined)
    // request on this socket has begun, or the answer would corrupt it.
    const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
    if (!socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    const json = JSON.stringify(body);
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n` +
        'Content-Type: application/json; charset=utf-8\r\n' +
        `Content-Length: ${Buffer.byteLength(json)}\r\n` +
        'Connection: close\r\n\r\n' +
        json,
    );
    const linger = setTimeout(() => socket.destroy(), LINGER_MS);
    linger.unref();
    socket.once('close', () => clearTimeout(linger));
  };
}
