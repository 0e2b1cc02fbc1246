// Client-facing denials: one error type, rendered once, in the OpenAI error shape SDKs understand.
import type { IncomingMessage, ServerResponse } from 'node:http';

export type ApiErrorCode =
  | 'invalid_api_key'
  | 'insufficient_scope'
  | 'model_not_allowed'
  | 'invalid_request'
  | 'request_too_large'
  | 'rate_limit_exceeded'
  | 'tokens_rate_limit_exceeded'
  | 'insufficient_quota'
  | 'service_unavailable'
  | 'upstream_error'
  | 'upstream_timeout'
  | 'not_found'
  | 'method_not_allowed'
  | 'misconfigured_route';

const TYPE_BY_CODE: Record<ApiErrorCode, string> = {
  invalid_api_key: 'invalid_request_error',
  insufficient_scope: 'permission_error',
  model_not_allowed: 'permission_error',
  invalid_request: 'invalid_request_error',
  request_too_large: 'invalid_request_error',
  rate_limit_exceeded: 'requests',
  tokens_rate_limit_exceeded: 'tokens',
  insufficient_quota: 'insufficient_quota',
  service_unavailable: 'server_error',
  upstream_error: 'server_error',
  upstream_timeout: 'server_error',
  not_found: 'invalid_request_error',
  method_not_allowed: 'invalid_request_error',
  misconfigured_route: 'server_error',
};

const STATUS_BY_CODE: Record<ApiErrorCode, number> = {
  invalid_api_key: 401,
  insufficient_scope: 403,
  model_not_allowed: 403,
  invalid_request: 400,
  request_too_large: 413,
  rate_limit_exceeded: 429,
  tokens_rate_limit_exceeded: 429,
  insufficient_quota: 429,
  service_unavailable: 503,
  upstream_error: 502,
  upstream_timeout: 504,
  not_found: 404,
  method_not_allowed: 405,
  misconfigured_route: 500,
};

export interface ApiErrorInit {
  /** Overrides the status implied by the code. */
  status?: number;
  /** The request field at fault, for `invalid_request`. */
  param?: string | null;
  /** Extra response headers (Retry-After, RateLimit, WWW-Authenticate, ...). */
  headers?: Record<string, string | number>;
  cause?: unknown;
}

/** A denial or failure the client should see, with the status, code and headers listed in docs/errors.md. */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  readonly status: number;
  readonly code: ApiErrorCode;
  readonly type: string;
  readonly param: string | null;
  readonly headers: Record<string, string | number>;

  constructor(code: ApiErrorCode, message: string, init: ApiErrorInit = {}) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = code;
    this.status = init.status ?? STATUS_BY_CODE[code];
    this.type = TYPE_BY_CODE[code];
    this.param = init.param ?? null;
    this.headers = init.headers ?? {};
  }

  /** The JSON body sent to clients. */
  toJSON(): { error: { message: string; type: string; code: string; param: string | null } } {
    return { error: { message: this.message, type: this.type, code: this.code, param: this.param } };
  }
}

/** Renders an ApiError to the response. Replace it per middleware with the `renderError` option. */
export type ErrorRenderer = (error: ApiError, req: IncomingMessage, res: ServerResponse) => void;

export const renderApiError: ErrorRenderer = (error, _req, res) => {
  if (res.headersSent) {
    // A stream already started: the only honest thing left is to cut it.
    res.destroy();
    return;
  }
  for (const [name, value] of Object.entries(error.headers)) res.setHeader(name, String(value));
  // Spent money does not come back by retrying; a refusal that says otherwise sets the header itself.
  if (error.code === 'insufficient_quota' && error.headers['x-should-retry'] === undefined) res.setHeader('x-should-retry', 'false');
  const body = JSON.stringify(error.toJSON());
  res.statusCode = error.status;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(body));
  res.end(body);
};

interface BodyParserError {
  type?: string;
  status?: number;
  statusCode?: number;
  expose?: boolean;
}

/**
 * Maps an error reaching Express's error chain to an ApiError when it is the client's
 * fault (body-parser's malformed JSON, too-large body, bad encoding); undefined otherwise.
 */
export function toClientError(error: unknown): ApiError | undefined {
  if (error instanceof ApiError) return error;
  if (typeof error !== 'object' || error === null) return undefined;
  const e = error as BodyParserError;
  switch (e.type) {
    case 'entity.too.large':
      return new ApiError('request_too_large', 'Request body is too large.');
    case 'entity.parse.failed':
      return new ApiError('invalid_request', 'Request body is not valid JSON.', { param: 'body' });
    case 'encoding.unsupported':
    case 'charset.unsupported':
    case 'request.size.invalid':
    case 'request.aborted':
    case 'entity.verify.failed':
      return new ApiError('invalid_request', 'Request body could not be read.', { param: 'body' });
    default: {
      const status = e.status ?? e.statusCode;
      if (e.expose === true && typeof status === 'number' && status >= 400 && status < 500) {
        return new ApiError('invalid_request', 'Request could not be read.', { status });
      }
      return undefined;
    }
  }
}

/**
 * Express error handler: renders client faults and ApiErrors in the OpenAI error shape of docs/errors.md,
 * passes anything else on (so the app's own 500 handling sees real bugs).
 */
export function apiErrorHandler(options: { renderError?: ErrorRenderer } = {}) {
  const render = options.renderError ?? renderApiError;
  return function tollgateErrorHandler(error: unknown, req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void): void {
    const clientError = toClientError(error);
    if (clientError) render(clientError, req, res);
    else next(error);
  };
}
