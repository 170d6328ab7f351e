export class EngineError extends Error {
    code;
    details;
    constructor(code, message, details) {
        super(message);
        this.code = code;
        this.details = details;
        this.name = 'EngineError';
    }
}
export const accountNotFound = (accountId) => new EngineError('ACCOUNT_NOT_FOUND', `account ${accountId} not found`, { account_id: accountId });
export const insufficientMargin = (message, required, available) => new EngineError('INSUFFICIENT_MARGIN', message, { required, available });
export const idempotencyConflict = (clientOrderId) => new EngineError('IDEMPOTENCY_CONFLICT', `client_order_id ${JSON.stringify(clientOrderId)} was already used with different parameters`, { client_order_id: clientOrderId });
/** Redis or PostgreSQL did not answer in time; nothing was applied. */
export class DependencyUnavailable extends EngineError {
    dependency;
    constructor(dependency, cause) {
        super('SERVICE_UNAVAILABLE', `${dependency} is unavailable; nothing was changed, retry later`, { dependency });
        this.dependency = dependency;
        this.cause = cause;
    }
}
//# sourceMappingURL=errors.js.map