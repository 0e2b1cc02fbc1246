// An upstream's error answer in the client's API's error shape, with the status the proxy gives the same failure.
import type { ProviderApi } from '@tollgate/core';
import { adapterFor } from '@tollgate/providers';
import { isObject, parseJson } from './json.js';
import type { Json } from './json.js';

export interface TranslatedError {
  status: number;
  body: Json;
}

/** What the upstream said, in either shape (or as plain text). */
function upstreamMessage(body: unknown): string | undefined {
  const parsed = typeof body === 'string' ? (parseJson(body) ?? body) : body;
  if (typeof parsed === 'string') return parsed.trim() === '' ? undefined : parsed.slice(0, 1000);
  if (!isObject(parsed)) return undefined;
  if (isObject(parsed.error) && typeof parsed.error.message === 'string') return parsed.error.message;
  return typeof parsed.message === 'string' ? parsed.message : undefined;
}

/** OpenAI's `type` and our documented `code` per status (docs/errors.md). */
const OPENAI_SHAPE_BY_STATUS: Record<number, { type: string; code: string | null }> = {
  400: { type: 'invalid_request_error', code: 'invalid_request' },
  404: { type: 'invalid_request_error', code: 'not_found' },
  413: { type: 'invalid_request_error', code: 'request_too_large' },
  422: { type: 'invalid_request_error', code: 'invalid_request' },
  429: { type: 'requests', code: 'rate_limit_exceeded' },
  502: { type: 'server_error', code: 'upstream_error' },
};

/**
 * Like the proxy with an upstream of the client's own API: a refusal of the gateway's credentials
 * (401, 403, 407) and any 5xx or non-error status become a 502 that passes none of the upstream's
 * words on (they may name the gateway's key); other 4xx keep their status and message, since they
 * are about the request (429 keeps telling the client to slow down).
 */
export function translateUpstreamError(
  status: number,
  body: unknown,
  from: ProviderApi,
  to: ProviderApi,
): TranslatedError {
  const source = adapterFor(from);
  const upstream = source.label ?? source.provider;
  let clientStatus = status;
  let message: string;
  if (status === 401 || status === 403 || status === 407) {
    clientStatus = 502;
    message = `The ${upstream} upstream refused the gateway's credentials (HTTP ${status}).`;
  } else if (status >= 500 || status < 400) {
    clientStatus = 502;
    message = `The ${upstream} upstream failed (HTTP ${status}).`;
  } else {
    const said = source.errorMessage?.(body) ?? upstreamMessage(body);
    message = `The ${upstream} upstream refused the translated request (HTTP ${status})${said ? `: ${said}` : '.'}`;
  }
  // In the client's API's own error shape (OpenAI's unless its adapter writes another).
  const shape = OPENAI_SHAPE_BY_STATUS[clientStatus] ?? { type: 'invalid_request_error', code: null };
  const errorBody = adapterFor(to).errorBody;
  const error = { status: clientStatus, message, type: shape.type, code: shape.code, param: null };
  return {
    status: clientStatus,
    body: errorBody ? errorBody(error) : { error: { message, type: shape.type, code: shape.code, param: null } },
  };
}
