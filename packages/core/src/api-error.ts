// Client-facing denials: one error type, rendered once, in the OpenAI error shape SDKs understand.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { getContext } from './context.js';

export type ApiErrorCode =
  | 'invalid_api_key'
  | 'insufficient_scope'
  | 'model_not_allowed'
  | 'tool_not_allowed'
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
  | 'misconfigured_route'
  | 'internal_error'
  | 'key_suspended'
  | 'repeated_request'
  | 'auth_failures_exceeded'
  | 'abuse_throttled'
  | 'abuse_blocked'
  | 'prompt_rejected'
  | 'attribution_required';

const TYPE_BY_CODE: Record<ApiErrorCode, string> = {
  invalid_api_key: 'invalid_request_error',
  insufficient_scope: 'permission_error',
  model_not_allowed: 'permission_error',
  tool_not_allowed: 'permission_error',
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
  internal_error: 'server_error',
  key_suspended: 'permission_error',
  repeated_request: 'requests',
  auth_failures_exceeded: 'requests',
  abuse_throttled: 'requests',
  abuse_blocked: 'permission_error',
  prompt_rejected: 'invalid_request_error',
  attribution_required: 'invalid_request_error',
};

const STATUS_BY_CODE: Record<ApiErrorCode, number> = {
  invalid_api_key: 401,
  insufficient_scope: 403,
  model_not_allowed: 403,
  tool_not_allowed: 403,
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
  internal_error: 500,
  key_suspended: 403,
  repeated_request: 429,
  auth_failures_exceeded: 429,
  abuse_throttled: 429,
  abuse_blocked: 403,
  prompt_rejected: 400,
  attribution_required: 400,
};

/**
 * The piece of the chain that refused a request, for logs and metrics: `auth` (credentials),
 * `scope`, `model` and `tool` (allowlists), `request` (the body), `requests` / `tokens` / `concurrency`
 * (rate limits), `budget`, `upstream` (the provider failed), `route` (no such route, wrong method,
 * misconfigured), `store` (a store failed and nothing said whose), `attribution` (the end user, feature or
 * tags a request must name, or names badly). Other packages may add theirs (a guard: `guard`; prompt
 * guardrails: `guardrails`).
 */
export type RefusalLayer =
  | 'auth'
  | 'scope'
  | 'model'
  | 'tool'
  | 'request'
  | 'requests'
  | 'tokens'
  | 'concurrency'
  | 'budget'
  | 'upstream'
  | 'route'
  | 'store'
  | 'attribution'
  | (string & {});

/** The layer a code is refused by when the refusing piece does not say (`ApiErrorInit.layer`, `refusalRenderer`). */
const LAYER_BY_CODE: Record<ApiErrorCode, RefusalLayer> = {
  invalid_api_key: 'auth',
  insufficient_scope: 'scope',
  model_not_allowed: 'model',
  tool_not_allowed: 'tool',
  invalid_request: 'request',
  request_too_large: 'request',
  rate_limit_exceeded: 'requests',
  tokens_rate_limit_exceeded: 'tokens',
  insufficient_quota: 'budget',
  service_unavailable: 'store',
  upstream_error: 'upstream',
  upstream_timeout: 'upstream',
  not_found: 'route',
  method_not_allowed: 'route',
  misconfigured_route: 'route',
  internal_error: 'route',
  key_suspended: 'guard',
  repeated_request: 'guard',
  auth_failures_exceeded: 'guard',
  abuse_throttled: 'guard',
  abuse_blocked: 'guard',
  prompt_rejected: 'guardrails',
  attribution_required: 'attribution',
};

export interface ApiErrorInit {
  /** Overrides the status implied by the code. */
  status?: number;
  /** The request field at fault, for `invalid_request`. */
  param?: string | null;
  /** Extra response headers (Retry-After, RateLimit, WWW-Authenticate, ...). */
  headers?: Record<string, string | number>;
  /** The piece that refused. @default by code: `invalid_api_key` is `auth`, `insufficient_quota` is `budget`, ... */
  layer?: RefusalLayer;
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
  readonly layer: RefusalLayer;

  constructor(code: ApiErrorCode, message: string, init: ApiErrorInit = {}) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = code;
    this.status = init.status ?? STATUS_BY_CODE[code];
    this.type = TYPE_BY_CODE[code];
    this.param = init.param ?? null;
    this.headers = init.headers ?? {};
    this.layer = init.layer ?? LAYER_BY_CODE[code];
  }

  /** The JSON body sent to clients. */
  toJSON(): { error: { message: string; type: string; code: string; param: string | null } } {
    return { error: { message: this.message, type: this.type, code: this.code, param: this.param } };
  }
}

/** Renders an ApiError to the response. Replace it per middleware with the `renderError` option. */
export type ErrorRenderer = (error: ApiError, req: IncomingMessage, res: ServerResponse) => void;

/** Why a request was refused, as `req.tollgate.refusal` keeps it for access logs, metrics and traces. */
export interface Refusal {
  layer: RefusalLayer;
  code: ApiErrorCode;
  status: number;
  /** The message the client was sent (never a secret: clients read it). */
  message: string;
  /** What failed underneath (a store error, an upstream's network error), for operators. */
  cause?: unknown;
}

/**
 * Notes on the request's context that `error` answered it, refused by `layer` (default: the
 * error's own). `renderApiError` does it; a renderer of your own that writes the answer itself
 * should call it too, so that logs and metrics see the refusal.
 */
export function noteRefusal(
  req: IncomingMessage,
  res: ServerResponse,
  error: ApiError,
  layer: RefusalLayer = error.layer,
): void {
  const refusal: Refusal = { layer, code: error.code, status: error.status, message: error.message };
  if (error.cause !== undefined) refusal.cause = error.cause;
  getContext(req, res).refusal = refusal;
}

/**
 * A renderer that names the layer it refuses for: give it as a middleware's `renderError`
 * (`concurrencyLimit({ renderError: refusalRenderer('concurrency') })`) where the code alone does
 * not tell (a concurrency 429 is a `rate_limit_exceeded`, any store's 503 a `service_unavailable`).
 */
export function refusalRenderer(layer: RefusalLayer, render: ErrorRenderer = renderApiError): ErrorRenderer {
  return function renderLayerRefusal(error, req, res) {
    render(error, req, res);
    // After the renderer, which may have noted the error's own layer.
    noteRefusal(req, res, error, layer);
  };
}

/** The headers an ApiError's answer carries, whatever its body's shape: its own, and what retrying it would do. */
export function setErrorHeaders(error: ApiError, res: ServerResponse): void {
  for (const [name, value] of Object.entries(error.headers)) res.setHeader(name, String(value));
  // Spent money does not come back by retrying; a refusal that says otherwise sets the header itself.
  if (error.code === 'insufficient_quota' && error.headers['x-should-retry'] === undefined)
    res.setHeader('x-should-retry', 'false');
}

/**
 * Renders an ApiError as OpenAI-shaped JSON with the error's status, or hands it to the renderer the request's route
 * set on its context (`renderError`: a route that answers in a protocol of its own, such as JSON-RPC).
 */
export const renderApiError: ErrorRenderer = (error, req, res) => {
  const own = (req as IncomingMessage & { tollgate?: { renderError?: ErrorRenderer } }).tollgate?.renderError;
  if (own) return own(error, req, res);
  noteRefusal(req, res, error);
  if (res.headersSent) {
    // A stream already started: the only honest thing left is to cut it.
    res.destroy();
    return;
  }
  setErrorHeaders(error, res);
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

export interface ApiErrorHandlerOptions {
  renderError?: ErrorRenderer;
  /**
   * Any other error (a bug, a failed dependency): `'next'` passes it on to the app's own error
   * handling; a function is told of it (log it there) and the client gets a 500 `internal_error`
   * in the same JSON shape, with no stack trace, whatever Express version renders it.
   * @default 'next'
   */
  otherErrors?: 'next' | ((error: unknown, req: IncomingMessage) => void);
}

/**
 * Express error handler: renders client faults and ApiErrors in the OpenAI error shape of docs/errors.md,
 * and passes anything else on (so the app's own 500 handling sees real bugs) or renders it as
 * `internal_error` (`otherErrors`).
 */
export function apiErrorHandler(options: ApiErrorHandlerOptions = {}) {
  const render = options.renderError ?? renderApiError;
  const otherErrors = options.otherErrors ?? 'next';
  return function tollgateErrorHandler(
    error: unknown,
    req: IncomingMessage,
    res: ServerResponse,
    next: (err?: unknown) => void,
  ): void {
    const clientError = toClientError(error);
    if (clientError) render(clientError, req, res);
    else if (otherErrors === 'next' || res.headersSent) next(error);
    else {
      otherErrors(error, req);
      render(new ApiError('internal_error', 'The server failed to answer this request.', { cause: error }), req, res);
    }
  };
}
