/**
 * Errors the engine raises on purpose. Each has a stable `code`; the HTTP layer
 * maps codes to statuses, so nothing below it knows about HTTP.
 */
export type ErrorCode =
  | 'VALIDATION_ERROR'
  | 'ACCOUNT_NOT_FOUND'
  | 'INSUFFICIENT_MARGIN'
  | 'IDEMPOTENCY_CONFLICT'
  | 'SERVICE_UNAVAILABLE'
  | 'ACCOUNT_BUSY'
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'KEY_NOT_FOUND'
  | 'MARKET_NOT_FOUND'
  | 'MARKET_HALTED'
  | 'MARKET_REDUCE_ONLY'
  | 'PRICE_OUT_OF_BAND'
  | 'MARK_MOVE_TOO_LARGE'
  | 'NO_MARK_PRICE'
  | 'FUNDING_CONFLICT';

export class EngineError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'EngineError';
  }
}

export const accountNotFound = (accountId: number) =>
  new EngineError('ACCOUNT_NOT_FOUND', `account ${accountId} not found`, { account_id: accountId });

export const insufficientMargin = (message: string, required: string, available: string) =>
  new EngineError('INSUFFICIENT_MARGIN', message, { required, available });

export const idempotencyConflict = (clientOrderId: string) =>
  new EngineError(
    'IDEMPOTENCY_CONFLICT',
    `client_order_id ${JSON.stringify(clientOrderId)} was already used with different parameters`,
    { client_order_id: clientOrderId },
  );

export const marketNotFound = (symbol: string) => new EngineError('MARKET_NOT_FOUND', `market ${symbol} is not listed`, { symbol });

/** Redis or PostgreSQL did not answer in time; nothing was applied. */
export class DependencyUnavailable extends EngineError {
  constructor(readonly dependency: 'redis' | 'postgres', cause?: unknown) {
    super('SERVICE_UNAVAILABLE', `${dependency} is unavailable; nothing was changed, retry later`, { dependency });
    this.cause = cause;
  }
}

/** PostgreSQL stopped answering after a write went out: it may or may not have committed (a 503 that does not claim nothing changed). */
export class OutcomeUnknown extends EngineError {
  constructor(message: string, cause?: unknown) {
    super('SERVICE_UNAVAILABLE', message, { dependency: 'postgres', outcome: 'unknown' });
    this.cause = cause;
  }
}
