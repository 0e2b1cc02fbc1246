// Reading the caller's credential from `Authorization: Bearer` or `x-api-key`, and the 401 that answers a bad one.
import type { IncomingMessage } from 'node:http';
import { ApiError } from '@tollgate/core';

/**
 * What a request carries:
 * - `none`: no credential at all;
 * - `malformed`: something was sent but cannot be a credential (wrong scheme, bad
 *   characters, two different credentials);
 * - `token`: one credential, and the header it came from.
 */
export type Credential =
  | { kind: 'none' }
  | { kind: 'malformed' }
  | { kind: 'token'; token: string; source: 'authorization' | 'x-api-key' };

/** RFC 6750 b64token, with room for the surrounding whitespace clients add. */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;
const X_API_KEY = /^[A-Za-z0-9\-._~+/]+=*$/;
/** Longer than any key or JWT a client should send; bounds the hashing and parsing work. */
const MAX_CREDENTIAL_LENGTH = 8192;

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  // Node joins repeated unknown headers with ", "; an array only appears for set-cookie-like headers.
  if (Array.isArray(value)) return value.join(', ');
  return value;
}

/** The bearer token of the Authorization header, if the header uses that scheme. */
export function readBearer(req: IncomingMessage): Credential {
  const header = headerValue(req, 'authorization');
  if (header === undefined || header.trim() === '') return { kind: 'none' };
  if (header.length > MAX_CREDENTIAL_LENGTH) return { kind: 'malformed' };
  const match = BEARER.exec(header);
  return match ? { kind: 'token', token: match[1]!, source: 'authorization' } : { kind: 'malformed' };
}

/**
 * The credential of a request from either header. When both are sent they must agree:
 * two different secrets in one request is a client bug we refuse to guess about.
 * An Authorization header with another scheme (Basic, ...) is ignored when x-api-key is set.
 */
export function readCredential(req: IncomingMessage): Credential {
  const bearer = readBearer(req);
  const apiKeyHeader = headerValue(req, 'x-api-key')?.trim();
  if (apiKeyHeader === undefined || apiKeyHeader === '') return bearer;
  if (apiKeyHeader.length > MAX_CREDENTIAL_LENGTH || !X_API_KEY.test(apiKeyHeader)) return { kind: 'malformed' };
  if (bearer.kind === 'token' && bearer.token !== apiKeyHeader) return { kind: 'malformed' };
  return { kind: 'token', token: apiKeyHeader, source: bearer.kind === 'token' ? 'authorization' : 'x-api-key' };
}

/**
 * The 401 of DESIGN.md. `WWW-Authenticate` carries `error="invalid_token"` only when a
 * credential was sent (RFC 6750 §3.1). The message never contains the credential.
 */
export function invalidCredentials(realm: string, credentialSent: boolean, message?: string): ApiError {
  const challenge = credentialSent ? `Bearer realm="${realm}", error="invalid_token"` : `Bearer realm="${realm}"`;
  return new ApiError(
    'invalid_api_key',
    message ?? (credentialSent ? 'Invalid API key or token.' : 'Missing API key: send "Authorization: Bearer <key>" or "x-api-key: <key>".'),
    { headers: { 'WWW-Authenticate': challenge } },
  );
}

/** The 503 sent when the key store or JWKS cannot answer: authentication fails closed. */
export function authUnavailable(cause: unknown): ApiError {
  return new ApiError('service_unavailable', 'Authentication is temporarily unavailable; retry shortly.', {
    headers: { 'Retry-After': 1 },
    cause,
  });
}

const REALM = /^[\x20-\x7e]*$/;

/** Validates a realm option at factory time: it goes into a quoted header parameter. */
export function isValidRealm(realm: unknown): realm is string {
  return typeof realm === 'string' && realm.length > 0 && REALM.test(realm) && !realm.includes('"') && !realm.includes('\\');
}
