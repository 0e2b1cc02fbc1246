// Reading the caller's credential (a JWT is told by its shape), and the 401 naming what the route accepts.
import type { IncomingMessage } from 'node:http';
import type { Identity, TollgateContext } from '@tollgate/core';
import { ApiError } from '@tollgate/core';

/**
 * What a request carries:
 * - `none`: no credential at all;
 * - `malformed`: something was sent but cannot be a credential (wrong scheme, bad
 *   characters, two different credentials);
 * - `token`: one credential, and the header it came from.
 */
export type Credential =
  { kind: 'none' } | { kind: 'malformed' } | { kind: 'token'; token: string; source: 'authorization' | 'x-api-key' };

/** JWS compact form; the signature may be empty so `alg: none` tokens reach the verifier and are refused there. */
const JWS_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/**
 * True when a credential has the shape of a JWT: three base64url segments, the first a JSON
 * object naming an `alg`. Any other text, whatever its characters, can only be an API key.
 */
export function hasJwtShape(token: string): boolean {
  if (!JWS_COMPACT.test(token)) return false;
  try {
    const header: unknown = JSON.parse(Buffer.from(token.slice(0, token.indexOf('.')), 'base64url').toString('utf8'));
    return typeof header === 'object' && header !== null && !Array.isArray(header) && Object.hasOwn(header, 'alg');
  } catch {
    return false;
  }
}

/** The check of one credential: the identity it stands for, or the denial to send. Rejects if mapIdentity throws. */
export type CredentialCheck = (token: string) => Promise<{ identity?: Identity; denial?: ApiError }>;

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

/** Credentials a route may accept, as flags, so that chained middleware can add theirs up. */
export const KEY_IN_BEARER = 1;
export const KEY_IN_X_API_KEY = 2;
export const JWT_IN_BEARER = 4;

/** The advice of a 401: what to send, naming exactly the credentials accepted. */
interface CredentialMessages {
  missing: string;
  malformed: string;
  unknown: string;
}

const messagesByAccepted = new Map<number, CredentialMessages>();

/** The 401 texts for a route accepting `accepted` (flags); at most eight, so each is built once. */
export function credentialMessages(accepted: number): CredentialMessages {
  let messages = messagesByAccepted.get(accepted);
  if (messages) return messages;
  const key = (accepted & (KEY_IN_BEARER | KEY_IN_X_API_KEY)) !== 0;
  const jwt = (accepted & JWT_IN_BEARER) !== 0;
  const what = key && jwt ? 'API key or JWT' : key ? 'API key' : jwt ? 'JWT' : 'credentials';
  const inBearer = [accepted & KEY_IN_BEARER ? 'API key' : '', jwt ? 'JWT' : ''].filter(Boolean).join(' or ');
  const xApiKey = accepted & KEY_IN_X_API_KEY ? '"x-api-key: <API key>"' : '';
  const headers = [inBearer && `"Authorization: Bearer <${inBearer}>"`, xApiKey].filter(Boolean);
  const advice = headers.length > 0 ? `: send ${headers.join(' or ')}` : '';
  messages = {
    missing: `Missing ${what}${advice}.`,
    malformed: `Malformed credentials${advice}.`,
    unknown: `Invalid ${what}${advice}.`,
  };
  messagesByAccepted.set(accepted, messages);
  return messages;
}

/**
 * What the optional auth middleware that let a request through accept. The middleware that
 * finally refuses it (or requireScope) adds these to its own, so its 401 names every
 * credential the route takes, not only its own.
 */
declare module '@tollgate/core' {
  interface ContextVariableMap {
    /** The credentials the optional auth middleware before would have taken (bits of KEY_IN_… / JWT_IN_…). */
    'auth.acceptedEarlier': number;
    /** Why the bearer strategy's verify refused the request, for the JSON 401 (passport keeps only a challenge). */
    'auth.rejection': string;
  }
}

/** The request's context: every auth middleware makes it before it reads a credential. */
export const contextOfRequest = (req: IncomingMessage): TollgateContext | undefined =>
  (req as IncomingMessage & { tollgate?: TollgateContext }).tollgate;

/** Records, as an optional middleware passes a request on, the credentials it would have taken. */
export function noteAccepted(req: IncomingMessage, accepted: number): void {
  const context = contextOfRequest(req);
  context?.set('auth.acceptedEarlier', (context.get('auth.acceptedEarlier') ?? 0) | accepted);
}

/** The credentials the route accepts: `own` and those of the optional middleware before. */
export function acceptedOn(req: IncomingMessage, own: number): number {
  return own | (contextOfRequest(req)?.get('auth.acceptedEarlier') ?? 0);
}

/**
 * The 401 of docs/errors.md. `WWW-Authenticate` carries `error="invalid_token"` only when a
 * credential was sent (RFC 6750 §3.1). The message never contains the credential.
 */
export function invalidCredentials(realm: string, credentialSent: boolean, message?: string): ApiError {
  const challenge = credentialSent ? `Bearer realm="${realm}", error="invalid_token"` : `Bearer realm="${realm}"`;
  const fallback = credentialMessages(0);
  return new ApiError('invalid_api_key', message ?? (credentialSent ? fallback.unknown : fallback.missing), {
    headers: { 'WWW-Authenticate': challenge },
  });
}

/** The 401 for a credential missing, malformed or unknown to this middleware, naming what the route accepts. */
export function refuseCredential(req: IncomingMessage, realm: string, credential: Credential, own: number): ApiError {
  const messages = credentialMessages(acceptedOn(req, own));
  if (credential.kind === 'none') return invalidCredentials(realm, false, messages.missing);
  return invalidCredentials(realm, true, credential.kind === 'malformed' ? messages.malformed : messages.unknown);
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
  return (
    typeof realm === 'string' && realm.length > 0 && REALM.test(realm) && !realm.includes('"') && !realm.includes('\\')
  );
}
