// jwtAuth: identifies the caller by a JWT (jose) checked against a static or remote JWKS, with claims mapped to an Identity.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { JSONWebKeySet, JWK, JWTPayload, JWTVerifyGetKey, RemoteJWKSetOptions } from 'jose';
import type { ErrorRenderer, Identity } from '@tollgate/core';
import { getContext, parseDuration, renderApiError, TollgateError } from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';
import type { CredentialCheck } from './credentials.js';
import {
  authUnavailable,
  hasJwtShape,
  invalidCredentials,
  isValidRealm,
  JWT_IN_BEARER,
  noteAccepted,
  readBearer,
  refuseCredential,
} from './credentials.js';
import { anonymousIdentity, isAuthenticated } from './key-source.js';
import { throttledWarning } from './warnings.js';

export interface JwtAuthOptions {
  /**
   * The keys that sign tokens: a JWKS object (`{ keys: [...] }`) used as is, or the URL of
   * a remote JWKS (fetched on demand, cached, refetched at most once per cooldown). Required.
   */
  jwks?: JSONWebKeySet | string | URL;
  /** The URL of a remote JWKS; the same as giving `jwks` a URL (set one of the two). */
  jwksUrl?: string | URL;
  /** The required `iss`. Required. */
  issuer?: string | string[];
  /** The required `aud` (one of them). Required. */
  audience?: string | string[];
  /**
   * Accepted `alg` values. Never `none`; never an HMAC algorithm unless the static key set
   * holds `oct` keys.
   * @default from each key's `alg`, else its `kty`/`crv`; for a remote JWKS every asymmetric algorithm
   */
  algorithms?: string[];
  /**
   * Allowed clock skew for `exp`/`nbf`/`iat`: seconds, or a duration string.
   * @default '30s'
   */
  clockTolerance?: number | string;
  /**
   * Claim holding the tenant id.
   * @default 'tenant_id'
   */
  tenantClaim?: string;
  /**
   * Claim holding the tier.
   * @default 'tier'
   */
  tierClaim?: string;
  /**
   * Claim holding the scopes: a space-separated string (OAuth 2) or an array of strings.
   * @default 'scope'
   */
  scopeClaim?: string;
  /**
   * Claim holding the user id.
   * @default 'sub'
   */
  userClaim?: string;
  /**
   * Claim holding the product feature.
   * @default 'feature'
   */
  featureClaim?: string;
  /**
   * Claim holding the models the caller may use (array of patterns); absent = no restriction.
   * @default none
   */
  modelsClaim?: string;
  /**
   * Claim naming the team of its tenant the caller is charged to (team and member budgets); the attribution stage
   * refuses a token whose team its tenant does not have (403). Absent: tokens name no team.
   * @default none
   */
  teamClaim?: string;
  /**
   * Let requests without a JWT through with an anonymous identity (a bearer token that is
   * not a JWT counts as no JWT, so an API-key middleware can come next). A JWT that fails is still refused.
   * @default false
   */
  optional?: boolean;
  /**
   * Adjust the identity built from the claims; return `undefined` to refuse the token.
   * @default identity unchanged
   */
  mapIdentity?: (identity: Identity, payload: JWTPayload) => Identity | undefined;
  /**
   * Remote JWKS: how long a fetched key set is trusted (ms or duration string).
   * @default '10m'
   */
  jwksCacheMaxAge?: number | string;
  /**
   * Remote JWKS: the least time between two fetches, e.g. when an unknown `kid` arrives.
   * @default '30s'
   */
  jwksCooldown?: number | string;
  /**
   * Remote JWKS: fetch deadline; past it the request gets a 503.
   * @default '5s'
   */
  jwksTimeout?: number | string;
  /**
   * The realm in `WWW-Authenticate`.
   * @default 'tollgate'
   */
  realm?: string;
  /**
   * Told when the remote JWKS cannot be fetched (the request gets a 503). Never receives the token.
   * @default a process warning naming the error class only, at most one every 10 s
   */
  onJwksError?: (error: unknown) => void;
  /**
   * Renders denials (401, 503).
   * @default core renderApiError
   */
  renderError?: ErrorRenderer;
}

type Jose = typeof import('jose');

/** jose, imported by the first token checked: a process with no JWT auth configured never loads it (ESM only). */
let jose: Promise<Jose> | undefined;
const loadJose = (): Promise<Jose> => (jose ??= import('jose'));

/** The options that say how a token is verified; `realm`, `optional` and `renderError` belong to the middleware. */
export type JwtVerifyOptions = Omit<JwtAuthOptions, 'realm' | 'optional' | 'renderError'>;

/** The options naming the claim each part of the identity is read from. */
const CLAIM_OPTIONS = [
  'tenantClaim',
  'tierClaim',
  'scopeClaim',
  'userClaim',
  'featureClaim',
  'modelsClaim',
  'teamClaim',
] as const;

/** The names of JwtVerifyOptions, for apiKeyAuth's `jwt` option. */
export const JWT_VERIFY_OPTIONS = [
  'jwks',
  'jwksUrl',
  'issuer',
  'audience',
  'algorithms',
  'clockTolerance',
  ...CLAIM_OPTIONS,
  'mapIdentity',
  'jwksCacheMaxAge',
  'jwksCooldown',
  'jwksTimeout',
  'onJwksError',
] as const;
const KNOWN_OPTIONS = [...JWT_VERIFY_OPTIONS, 'optional', 'realm', 'renderError'] as const;

const RSA_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
const EC_ALGS: Record<string, string> = { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' };
const HMAC_ALGS = ['HS256', 'HS384', 'HS512'];
const ASYMMETRIC_ALGS = [...RSA_ALGS, ...Object.values(EC_ALGS), 'EdDSA', 'Ed25519'];

/** The algorithms a static key set can verify: each key's `alg`, else what its type allows. */
function algorithmsOfKeys(keys: readonly JWK[]): string[] {
  const algs = new Set<string>();
  for (const key of keys) {
    if (key.use === 'enc') continue;
    if (typeof key.alg === 'string') algs.add(key.alg);
    else if (key.kty === 'RSA') RSA_ALGS.forEach((alg) => algs.add(alg));
    else if (key.kty === 'EC' && typeof key.crv === 'string' && EC_ALGS[key.crv]) algs.add(EC_ALGS[key.crv]!);
    else if (key.kty === 'OKP' && key.crv === 'Ed25519') ['EdDSA', 'Ed25519'].forEach((alg) => algs.add(alg));
    else if (key.kty === 'oct') HMAC_ALGS.forEach((alg) => algs.add(alg));
  }
  algs.delete('none');
  return [...algs];
}

function isClaimValueList(value: unknown): boolean {
  const values = Array.isArray(value) ? value : [value];
  return values.length > 0 && values.every((item) => typeof item === 'string' && item !== '');
}

/** The client-facing reason for a refused token; fixed texts, so nothing of the token is echoed. */
function rejectionMessage(code: string | undefined, claim: string | undefined): string {
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      return 'The bearer token has expired.';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      return claim === 'iss' || claim === 'aud' || claim === 'nbf' || claim === 'sub'
        ? `The bearer token's "${claim}" claim is not accepted.`
        : "The bearer token's claims are not accepted.";
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return "The bearer token's signing algorithm is not accepted.";
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return 'The bearer token was signed by an unknown key.';
    default:
      return 'Invalid bearer token.';
  }
}

/** jose codes that mean "this token is no good" (401); anything else from a remote JWKS means "cannot check now" (503). */
const TOKEN_FAULTS = new Set([
  'ERR_JWT_EXPIRED',
  'ERR_JWT_CLAIM_VALIDATION_FAILED',
  'ERR_JOSE_ALG_NOT_ALLOWED',
  'ERR_JOSE_NOT_SUPPORTED',
  'ERR_JWS_INVALID',
  'ERR_JWT_INVALID',
  'ERR_JWKS_NO_MATCHING_KEY',
  'ERR_JWKS_MULTIPLE_MATCHING_KEYS',
  'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
  'ERR_JWK_INVALID',
]);

const warnJwksError = throttledWarning((error) => {
  const name = error instanceof Error ? error.name : typeof error;
  return `tollgate auth: the remote JWKS could not be fetched (${name}); JWT requests get 503 until it answers`;
});

function stringClaim(payload: JWTPayload, claim: string | undefined): string | undefined {
  if (claim === undefined) return undefined;
  const value = payload[claim];
  if (typeof value === 'string' && value !== '') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  return undefined;
}

function listClaim(payload: JWTPayload, claim: string | undefined): string[] | undefined {
  if (claim === undefined) return undefined;
  const value = payload[claim];
  if (typeof value === 'string') return value.split(' ').filter((part) => part !== '');
  if (Array.isArray(value)) return value.filter((part): part is string => typeof part === 'string' && part !== '');
  return undefined;
}

function invalidOption(factory: string, message: string): TollgateError {
  return new TollgateError('ERR_TG_AUTH_INVALID_OPTION', `${factory}(): ${message}`);
}

/** The key set given, as `jwks` or `jwksUrl` (exactly one of them). */
function jwksOption(options: JwtVerifyOptions, factory: string): JSONWebKeySet | string | URL {
  if (options.jwks !== undefined && options.jwksUrl !== undefined)
    throw invalidOption(factory, 'set "jwks" or "jwksUrl", not both');
  const jwks = options.jwks ?? options.jwksUrl;
  if (jwks === undefined) {
    const hint = '"jwks": a JWKS object { keys: [...] }, or "jwksUrl": the URL of a remote JWKS';
    throw new TollgateError('ERR_TG_AUTH_MISSING_JWKS', `${factory}() needs ${hint}`);
  }
  return jwks;
}

/** The required `iss` and `aud`: without them tokens from any issuer, or meant for any service, would be accepted. */
function requiredIssuerAndAudience(
  options: JwtVerifyOptions,
  factory: string,
): { issuer: string | string[]; audience: string | string[] } {
  const { issuer, audience } = options;
  if (issuer === undefined || (Array.isArray(issuer) && issuer.length === 0))
    throw invalidOption(factory, '"issuer" is required: tokens from any issuer would be accepted otherwise');
  if (audience === undefined || (Array.isArray(audience) && audience.length === 0))
    throw invalidOption(factory, '"audience" is required: tokens meant for other services would be accepted otherwise');
  // An empty or non-string value (an unset env var, a number in a config file) would refuse every token without a word.
  if (!isClaimValueList(issuer)) throw invalidOption(factory, '"issuer" must be a non-empty string or a list of them');
  if (!isClaimValueList(audience))
    throw invalidOption(factory, '"audience" must be a non-empty string or a list of them');
  return { issuer, audience };
}

/** Where a token's key is found, and which algorithms those keys can verify when the options name none. */
interface SigningKeys {
  /** jose's key lookup, built with jose when the first token is checked (an app without JWTs never loads jose). */
  getKey: (jose: Jose) => JWTVerifyGetKey;
  /** A remote JWKS: a failure to fetch it is the service's (503), not the token's. */
  remote: boolean;
  derived: string[];
  /** Only symmetric keys in a static set make an HMAC algorithm safe to accept. */
  hasHmacKeys: boolean;
}

function signingKeys(jwks: JSONWebKeySet | string | URL, options: JwtVerifyOptions, factory: string): SigningKeys {
  if (typeof jwks === 'string' || jwks instanceof URL) {
    let url: URL;
    try {
      url = new URL(jwks);
    } catch {
      throw invalidOption(factory, '"jwks" is not a valid URL');
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:')
      throw invalidOption(factory, 'a remote "jwks" must be an http(s) URL');
    const durationMs = (value: number | string | undefined, fallback: string, what: string) =>
      parseDuration(value ?? fallback, `${factory}(): ${what}`);
    const fetching: RemoteJWKSetOptions = {
      cacheMaxAge: durationMs(options.jwksCacheMaxAge, '10m', 'jwksCacheMaxAge'),
      cooldownDuration: durationMs(options.jwksCooldown, '30s', 'jwksCooldown'),
      timeoutDuration: durationMs(options.jwksTimeout, '5s', 'jwksTimeout'),
    };
    return {
      getKey: (jose) => jose.createRemoteJWKSet(url, fetching),
      remote: true,
      derived: ASYMMETRIC_ALGS,
      hasHmacKeys: false,
    };
  }
  // What jose's own key set refuses at its construction (a key that is no object), refused here at the factory's.
  const isKey = (key: unknown) => typeof key === 'object' && key !== null && !Array.isArray(key);
  if (typeof jwks !== 'object' || jwks === null || !Array.isArray(jwks.keys) || jwks.keys.length === 0) {
    throw invalidOption(factory, 'a static "jwks" must be { keys: [...] } with at least one key');
  }
  if (!jwks.keys.every(isKey)) throw invalidOption(factory, 'every key of a static "jwks" must be a JWK object');
  return {
    getKey: (jose) => jose.createLocalJWKSet(jwks),
    remote: false,
    derived: algorithmsOfKeys(jwks.keys),
    hasHmacKeys: jwks.keys.some((key) => key.kty === 'oct'),
  };
}

/** The algorithms a token may be signed with: never `none`, and HMAC only against symmetric keys. */
function acceptedAlgorithms(options: JwtVerifyOptions, keys: SigningKeys, factory: string): string[] {
  const algorithms = options.algorithms ?? keys.derived;
  if (!Array.isArray(algorithms) || algorithms.length === 0)
    throw invalidOption(factory, 'no signing algorithm can be derived from the keys; set "algorithms"');
  for (const alg of algorithms) {
    if (typeof alg !== 'string' || alg.toLowerCase() === 'none')
      throw invalidOption(factory, '"none" is never an accepted algorithm');
    if (alg.startsWith('HS') && !keys.hasHmacKeys)
      throw invalidOption(
        factory,
        `${alg} needs symmetric (oct) keys in a static JWKS; an HMAC token against public keys is a forgery`,
      );
  }
  return algorithms;
}

function clockToleranceSeconds(options: JwtVerifyOptions, factory: string): number {
  const clockTolerance =
    options.clockTolerance === undefined
      ? 30
      : typeof options.clockTolerance === 'number'
        ? options.clockTolerance
        : parseDuration(options.clockTolerance, `${factory}(): clockTolerance`) / 1000;
  if (!Number.isFinite(clockTolerance) || clockTolerance < 0)
    throw invalidOption(factory, 'clockTolerance must be a non-negative number of seconds or a duration string');
  return clockTolerance;
}

/** Which claim holds each part of the identity. */
interface ClaimNames {
  tenant: string;
  tier: string;
  scope: string;
  user: string;
  feature: string;
  models: string | undefined;
  team: string | undefined;
}

function claimNames(options: JwtVerifyOptions, factory: string): ClaimNames {
  for (const name of CLAIM_OPTIONS) {
    const value = options[name];
    if (value !== undefined && (typeof value !== 'string' || value === ''))
      throw invalidOption(factory, `${name} must be a non-empty string`);
  }
  return {
    tenant: options.tenantClaim ?? 'tenant_id',
    tier: options.tierClaim ?? 'tier',
    scope: options.scopeClaim ?? 'scope',
    user: options.userClaim ?? 'sub',
    feature: options.featureClaim ?? 'feature',
    models: options.modelsClaim,
    team: options.teamClaim,
  };
}

function identityFromPayload(payload: JWTPayload, claims: ClaimNames): Identity {
  const identity: Identity = {
    keyId: `jwt:${payload.sub}`,
    scopes: listClaim(payload, claims.scope) ?? [],
    authMethod: 'jwt',
  };
  const tenantId = stringClaim(payload, claims.tenant);
  const userId = stringClaim(payload, claims.user);
  const tier = stringClaim(payload, claims.tier);
  const feature = stringClaim(payload, claims.feature);
  const models = listClaim(payload, claims.models);
  const team = stringClaim(payload, claims.team);
  if (tenantId !== undefined) identity.tenantId = tenantId;
  if (userId !== undefined) identity.userId = userId;
  if (tier !== undefined) identity.tier = tier;
  if (feature !== undefined) identity.feature = feature;
  if (models !== undefined) identity.models = models;
  if (team !== undefined) identity.team = team;
  return identity;
}

/**
 * Validates the verification options once, at factory time, and returns the check of one
 * token. `factory` names the caller in construction errors (jwtAuth, or apiKeyAuth for its `jwt`).
 */
export function createJwtCheck(options: JwtVerifyOptions, realm: string, factory: string): CredentialCheck {
  if (!isValidRealm(realm)) throw invalidOption(factory, 'realm must be printable ASCII without quotes or backslashes');
  const jwks = jwksOption(options, factory);
  const { issuer, audience } = requiredIssuerAndAudience(options, factory);
  const keys = signingKeys(jwks, options, factory);
  const { remote } = keys;
  const algorithms = acceptedAlgorithms(options, keys, factory);
  const clockTolerance = clockToleranceSeconds(options, factory);
  const claims = claimNames(options, factory);
  const mapIdentity = options.mapIdentity;
  const onJwksError = options.onJwksError ?? warnJwksError;
  const verifyOptions = { issuer, audience, algorithms, clockTolerance, requiredClaims: ['sub', 'exp'] };
  let verifier: Promise<(token: string) => Promise<{ payload: JWTPayload }>> | undefined;
  const verify = (token: string) => {
    verifier ??= loadJose().then((jose) => {
      const getKey = keys.getKey(jose);
      return (jwt: string) => jose.jwtVerify(jwt, getKey, verifyOptions);
    });
    return verifier.then((verifyToken) => verifyToken(token));
  };

  return async function checkJwt(token) {
    let payload: JWTPayload;
    try {
      ({ payload } = await verify(token));
    } catch (error) {
      const { code, claim } = error as { code?: string; claim?: string };
      if (remote && (code === undefined || !TOKEN_FAULTS.has(code))) {
        onJwksError(error);
        return { denial: authUnavailable(error) };
      }
      return { denial: invalidCredentials(realm, true, rejectionMessage(code, claim)) };
    }
    if (typeof payload.sub !== 'string' || payload.sub === '')
      return { denial: invalidCredentials(realm, true, rejectionMessage('ERR_JWT_CLAIM_VALIDATION_FAILED', 'sub')) };
    const identity = identityFromPayload(payload, claims);
    const mapped = mapIdentity ? mapIdentity(identity, payload) : identity;
    if (!mapped) return { denial: invalidCredentials(realm, true, rejectionMessage(undefined, undefined)) };
    return { identity: mapped };
  };
}

/**
 * Express middleware: verifies `Authorization: Bearer <jwt>` and sets
 * `req.tollgate.identity` (`authMethod: 'jwt'`, `keyId: 'jwt:<sub>'`). Refuses with 401.
 */
export function jwtAuth(options: JwtAuthOptions = {}) {
  assertKnownOptions(options, KNOWN_OPTIONS, 'ERR_TG_AUTH_UNKNOWN_OPTION', 'jwtAuth');
  const realm = options.realm ?? 'tollgate';
  const checkJwt = createJwtCheck(options, realm, 'jwtAuth');
  const optional = options.optional ?? false;
  const renderError = options.renderError ?? renderApiError;

  return function tollgateJwtAuth(req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void): void {
    const context = getContext(req, res);
    if (isAuthenticated(context.identity)) return next();
    const credential = readBearer(req);
    if (credential.kind !== 'token' || !hasJwtShape(credential.token)) {
      if (optional && credential.kind !== 'malformed') {
        noteAccepted(req, JWT_IN_BEARER);
        context.identity ??= anonymousIdentity();
        return next();
      }
      return renderError(refuseCredential(req, realm, credential, JWT_IN_BEARER), req, res);
    }
    // catch, not a second then-argument: a renderError that throws must reach next too, not become an unhandled rejection.
    void checkJwt(credential.token)
      .then(({ identity, denial }) => {
        if (denial || !identity) return renderError(denial ?? invalidCredentials(realm, true), req, res);
        context.identity = identity;
        next();
      })
      .catch(next);
  };
}
