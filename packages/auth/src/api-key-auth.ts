// apiKeyAuth: identifies the caller by an API key from `Authorization: Bearer` or `x-api-key`, or with `jwt` by a JWT.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ErrorRenderer, Identity } from '@tollgate/core';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';
import { getContext, renderApiError, TollgateError } from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';
import { withTimeout } from '@tollgate/core/store-contracts';
import { hashApiKey } from './api-keys.js';
import type { Credential, CredentialCheck } from './credentials.js';
import {
  authUnavailable,
  hasJwtShape,
  invalidCredentials,
  isValidRealm,
  JWT_IN_BEARER,
  KEY_IN_BEARER,
  KEY_IN_X_API_KEY,
  noteAccepted,
  readCredential,
  refuseCredential,
} from './credentials.js';
import type { JwtVerifyOptions } from './jwt-auth.js';
import { createJwtCheck, JWT_VERIFY_OPTIONS } from './jwt-auth.js';
import { throttledWarning } from './warnings.js';
import type { KeyLookup, KeySource } from './key-source.js';
import {
  anonymousIdentity,
  identityFromRecord,
  isAuthenticated,
  isPending,
  judgeKeyRecord,
  KEY_REJECTION_MESSAGES,
  resolveKeySource,
} from './key-source.js';

/** Options every API-key check shares (apiKeyAuth and the passport bearer strategy). */
export interface KeyAuthOptions {
  /**
   * Where key records come from: a core `KeyStore` (`createMemoryStores().keys`,
   * `createRedisStores().keys`), a function `(sha256) => record`, or an array of records
   * (e.g. `keyRecordsFromConfig(config.keys)`). Required.
   */
  keys?: KeySource;
  /**
   * A shape a credential must have to be looked up, e.g. `API_KEY_PATTERN` when every key is
   * a generated `tgk_` key. Anything else is refused without a store lookup (or, with
   * `optional`, left to the next auth middleware).
   * @default null: any text is looked up, since a key is known by its hash (keys migrated from other systems)
   */
  keyFormat?: RegExp | null;
  /**
   * The realm in `WWW-Authenticate`.
   * @default 'tollgate'
   */
  realm?: string;
  /**
   * Deadline for one key lookup, in ms; past it the request gets a 503 (auth fails closed).
   * @default 2000
   */
  timeoutMs?: number;
  /**
   * Adjust the identity built from a record, e.g. to take the tier from the tenant's config.
   * @default identity unchanged
   */
  mapIdentity?: (identity: Identity, record: ApiKeyRecord) => Identity;
  /**
   * Told when the key store fails (the request gets a 503). Receives the error, never the key.
   * @default a process warning naming the error class only, at most one every 10 s
   */
  onStoreError?: (error: unknown) => void;
}

export interface ApiKeyAuthOptions extends KeyAuthOptions {
  /**
   * Let requests without an API key through with an anonymous identity
   * (`authMethod: 'anonymous'`), e.g. for a later `jwtAuth`: no credential, one that fails
   * `keyFormat`, or an unknown one with a JWT's shape. Any other unknown, revoked or expired
   * credential is still refused.
   * @default false
   */
  optional?: boolean;
  /**
   * Accept JWTs in `Authorization: Bearer` too: jwtAuth's options, without `realm`, `optional`
   * and `renderError` (this middleware's). A credential with a JWT's shape is verified as a JWT,
   * and looked up as a key only if that fails; anything else is looked up as a key. A 401 then
   * names both kinds. Prefer it to chaining `jwtAuth`, where every JWT costs a key lookup.
   * @default no JWTs
   */
  jwt?: JwtVerifyOptions;
  /**
   * Renders denials (401, 503).
   * @default core renderApiError
   */
  renderError?: ErrorRenderer;
}

const KNOWN_OPTIONS = [
  'keys',
  'optional',
  'jwt',
  'keyFormat',
  'realm',
  'timeoutMs',
  'mapIdentity',
  'onStoreError',
  'renderError',
] as const;

/** Reports a failing store without its message (a driver error may quote the looked-up hash), at most once per 10 s. */
const warnStoreError: (error: unknown) => void = throttledWarning((error) => {
  const name = error instanceof Error ? error.name : typeof error;
  return `tollgate auth: the key store failed (${name}); requests get 503 until it answers`;
});

/** Resolves the options every API-key check shares, once, at factory time. */
export function resolveKeyAuthOptions(options: KeyAuthOptions & { renderError?: ErrorRenderer }, factory: string) {
  const realm = options.realm ?? 'tollgate';
  if (!isValidRealm(realm))
    throw new TollgateError(
      'ERR_TG_AUTH_INVALID_OPTION',
      `${factory}(): realm must be printable ASCII without quotes or backslashes`,
    );
  const timeoutMs = options.timeoutMs ?? 2000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0)
    throw new TollgateError('ERR_TG_AUTH_INVALID_OPTION', `${factory}(): timeoutMs must be a positive number of ms`);
  let keyFormat = options.keyFormat ?? null;
  if (keyFormat !== null && !(keyFormat instanceof RegExp))
    throw new TollgateError('ERR_TG_AUTH_INVALID_OPTION', `${factory}(): keyFormat must be a RegExp or null`);
  // With g or y, test() starts at lastIndex and moves it: the same key would pass every other time.
  // A stateless copy; a sticky pattern keeps its anchoring at the start.
  if (keyFormat?.global || keyFormat?.sticky)
    keyFormat = new RegExp(
      keyFormat.sticky ? `^(?:${keyFormat.source})` : keyFormat.source,
      keyFormat.flags.replace(/[gy]/g, ''),
    );
  return {
    lookup: resolveKeySource(options.keys, 'ERR_TG_AUTH_MISSING_KEYS', factory),
    realm,
    timeoutMs,
    keyFormat,
    mapIdentity: options.mapIdentity,
    renderError: options.renderError ?? renderApiError,
    onStoreError: options.onStoreError ?? warnStoreError,
  };
}

/** What a key lookup found: `found` is false for an unknown key and when the store failed. */
type KeyVerdict = Awaited<ReturnType<CredentialCheck>> & { found: boolean };

const NOT_FOUND: KeyVerdict = Object.freeze({ found: false });

/** Options resolved once for every API-key check (see `resolveKeyAuthOptions`). */
type KeyAuthConfig = ReturnType<typeof resolveKeyAuthOptions>;

type KeyCheck = (key: string) => KeyVerdict | Promise<KeyVerdict>;

/**
 * The check of one key: its identity, or the denial to send; neither for an unknown key, whose 401 depends on the
 * route. At once when the key source answers at once; only a pending lookup gets the deadline.
 */
function keyCheck({ lookup, realm, timeoutMs, mapIdentity, onStoreError }: KeyAuthConfig): KeyCheck {
  /** What the store's failure means for the request: a 503, and the store error reported. */
  function storeFailed(error: unknown): KeyVerdict {
    onStoreError(error);
    return { denial: authUnavailable(error), found: false };
  }

  function verdictOf(sha256: string, record: ApiKeyRecord | undefined): KeyVerdict {
    const check = judgeKeyRecord(sha256, record);
    if (!check.ok) {
      if (check.reason === 'unknown') return NOT_FOUND;
      return { denial: invalidCredentials(realm, true, KEY_REJECTION_MESSAGES[check.reason]), found: true };
    }
    const identity = identityFromRecord(check.record, 'api_key');
    return { identity: mapIdentity ? mapIdentity(identity, check.record) : identity, found: true };
  }

  return function checkKey(key) {
    const sha256 = hashApiKey(key);
    let found: ReturnType<KeyLookup>;
    try {
      found = lookup(sha256);
    } catch (error) {
      return storeFailed(error);
    }
    if (!isPending(found)) return verdictOf(sha256, found);
    return withTimeout(Promise.resolve(found), timeoutMs, 'keys.findByHash').then(
      (record) => verdictOf(sha256, record),
      storeFailed,
    );
  };
}

/**
 * The check of a JWT-shaped credential: verified as a JWT, and looked up as a key only when that fails.
 * Valid JWTs, nearly all such traffic, so cost no store round trip, and a bad one costs one
 * lookup, as any unknown key does. Safe in this order: only a valid signature or an exact
 * hash match lets anyone in. The JWT's reason is kept unless the store knows the key.
 */
function jwtThenKeyCheck(
  checkJwt: CredentialCheck,
  checkKey: KeyCheck,
  keyFormat: RegExp | null,
): (token: string) => Promise<KeyVerdict> {
  return async function checkJwtThenKey(token) {
    const asJwt = await checkJwt(token);
    if (asJwt.identity || (keyFormat !== null && !keyFormat.test(token))) return { ...asJwt, found: false };
    const asKey = await checkKey(token);
    return asKey.found ? asKey : { ...asJwt, found: false };
  };
}

/**
 * Express middleware: reads the API key from either header, looks its SHA-256 up and sets
 * `req.tollgate.identity` (`authMethod: 'api_key'`); with `jwt`, also takes bearer JWTs.
 * Refuses with 401 `invalid_api_key`.
 */
export function apiKeyAuth(options: ApiKeyAuthOptions = {}) {
  assertKnownOptions(options, KNOWN_OPTIONS, 'ERR_TG_AUTH_UNKNOWN_OPTION', 'apiKeyAuth');
  const resolved = resolveKeyAuthOptions(options, 'apiKeyAuth');
  const { realm, keyFormat, renderError } = resolved;
  const optional = options.optional ?? false;
  let checkJwt: CredentialCheck | undefined;
  if (options.jwt !== undefined) {
    assertKnownOptions(options.jwt, JWT_VERIFY_OPTIONS, 'ERR_TG_AUTH_UNKNOWN_OPTION', 'apiKeyAuth: jwt');
    checkJwt = createJwtCheck(options.jwt, realm, 'apiKeyAuth: jwt');
  }
  const accepts = KEY_IN_BEARER | KEY_IN_X_API_KEY | (checkJwt ? JWT_IN_BEARER : 0);
  const checkKey = keyCheck(resolved);
  const checkJwtThenKey = checkJwt && jwtThenKeyCheck(checkJwt, checkKey, keyFormat);

  /** `optional`: lets the request on as anonymous, telling a later refusal that keys were accepted too. */
  function passOn(req: IncomingMessage, context: { identity?: Identity }, next: () => void): void {
    noteAccepted(req, accepts);
    context.identity ??= anonymousIdentity();
    next();
  }

  /** Lets the request on with its identity, or renders its denial. */
  function applyVerdict(
    req: IncomingMessage,
    res: ServerResponse,
    next: (err?: unknown) => void,
    context: { identity?: Identity },
    credential: Credential & { kind: 'token' },
    mayBeJwt: boolean,
    { identity, denial }: KeyVerdict,
  ): void {
    if (identity) {
      context.identity = identity;
      return next();
    }
    // An unknown JWT-shaped credential is left to a later jwtAuth.
    if (!denial && optional && mayBeJwt) return passOn(req, context, next);
    renderError(denial ?? refuseCredential(req, realm, credential, accepts), req, res);
  }

  return function tollgateApiKeyAuth(req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void): void {
    const context = getContext(req, res);
    if (isAuthenticated(context.identity)) return next();
    const credential = readCredential(req);
    if (credential.kind !== 'token') {
      if (optional && credential.kind === 'none') return passOn(req, context, next);
      return renderError(refuseCredential(req, realm, credential, accepts), req, res);
    }
    const { token } = credential;
    // Only the Authorization header carries JWTs; the shape is parsed only when a JWT could be taken or passed on.
    const mayBeJwt =
      credential.source === 'authorization' && (checkJwt !== undefined || optional) && hasJwtShape(token);
    if (!(checkJwt && mayBeJwt) && keyFormat !== null && !keyFormat.test(token)) {
      return optional
        ? passOn(req, context, next)
        : renderError(refuseCredential(req, realm, credential, accepts), req, res);
    }
    let verdict: KeyVerdict | Promise<KeyVerdict>;
    try {
      verdict = checkJwtThenKey && mayBeJwt ? checkJwtThenKey(token) : checkKey(token);
      // As on the promise's path below: whatever throws here (mapIdentity, renderError) reaches next.
      if (!isPending(verdict)) return applyVerdict(req, res, next, context, credential, mayBeJwt, verdict);
    } catch (error) {
      return next(error);
    }
    // catch, not a second then-argument: a renderError that throws must reach next too, not become an unhandled rejection.
    void verdict.then((settled) => applyVerdict(req, res, next, context, credential, mayBeJwt, settled)).catch(next);
  };
}
