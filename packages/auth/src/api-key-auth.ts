// apiKeyAuth: identifies the caller by an API key from `Authorization: Bearer` or `x-api-key`.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ApiError, ApiKeyRecord, ErrorRenderer, Identity } from '@tollgate/core';
import { assertKnownOptions, getContext, renderApiError, TollgateError } from '@tollgate/core';
import { API_KEY_PATTERN } from './api-keys.js';
import { authUnavailable, invalidCredentials, isValidRealm, readCredential } from './credentials.js';
import { throttledWarning } from './warnings.js';
import type { KeyCheck, KeySource } from './key-source.js';
import { anonymousIdentity, checkApiKey, identityFromRecord, isAuthenticated, KEY_REJECTION_MESSAGES, resolveKeySource } from './key-source.js';

/** Options every API-key check shares (apiKeyAuth and the passport bearer strategy). */
export interface KeyAuthOptions {
  /**
   * Where key records come from: a core `KeyStore` (`createMemoryStores().keys`,
   * `createRedisStores().keys`), a function `(sha256) => record`, or an array of records
   * (e.g. `keyRecordsFromConfig(config.keys)`). Required.
   */
  keys?: KeySource;
  /**
   * The shape a credential must have to be taken for an API key. Anything else is refused
   * without a store lookup (or, with `optional`, left to the next auth middleware).
   * `null` accepts any credential (e.g. an admin key chosen by the operator).
   * @default /^tgk_[0-9A-Za-z]{32,}$/
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
   * (`authMethod: 'anonymous'`), e.g. for a later `jwtAuth`. A credential that has the
   * key format but is unknown, revoked or expired is still refused.
   * @default false
   */
  optional?: boolean;
  /**
   * Renders denials (401, 503).
   * @default core renderApiError
   */
  renderError?: ErrorRenderer;
}

const KNOWN_OPTIONS = ['keys', 'optional', 'keyFormat', 'realm', 'timeoutMs', 'mapIdentity', 'onStoreError', 'renderError'] as const;

/** Reports a failing store without its message (a driver error may quote the looked-up hash), at most once per 10 s. */
export const warnStoreError: (error: unknown) => void = throttledWarning((error) => {
  const name = error instanceof Error ? error.name : typeof error;
  return `tollgate auth: the key store failed (${name}); requests get 503 until it answers`;
});

/** Resolves the options every API-key check shares, once, at factory time. */
export function resolveKeyAuthOptions(options: KeyAuthOptions & { renderError?: ErrorRenderer }, factory: string) {
  const realm = options.realm ?? 'tollgate';
  if (!isValidRealm(realm)) throw new TollgateError('ERR_TG_AUTH_INVALID_OPTION', `${factory}(): realm must be printable ASCII without quotes or backslashes`);
  const timeoutMs = options.timeoutMs ?? 2000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new TollgateError('ERR_TG_AUTH_INVALID_OPTION', `${factory}(): timeoutMs must be a positive number of ms`);
  let keyFormat = options.keyFormat === undefined ? API_KEY_PATTERN : options.keyFormat;
  if (keyFormat !== null && !(keyFormat instanceof RegExp)) throw new TollgateError('ERR_TG_AUTH_INVALID_OPTION', `${factory}(): keyFormat must be a RegExp or null`);
  // With g or y, test() starts at lastIndex and moves it: the same key would pass every other time.
  // A stateless copy; a sticky pattern keeps its anchoring at the start.
  if (keyFormat?.global || keyFormat?.sticky) keyFormat = new RegExp(keyFormat.sticky ? `^(?:${keyFormat.source})` : keyFormat.source, keyFormat.flags.replace(/[gy]/g, ''));
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

/**
 * Express middleware: reads the API key from either header, looks its SHA-256 up and sets
 * `req.tollgate.identity` (`authMethod: 'api_key'`). Refuses with 401 `invalid_api_key`.
 */
export function apiKeyAuth(options: ApiKeyAuthOptions = {}) {
  assertKnownOptions(options, KNOWN_OPTIONS, 'ERR_TG_AUTH_UNKNOWN_OPTION', 'apiKeyAuth');
  const { lookup, realm, timeoutMs, keyFormat, mapIdentity, renderError, onStoreError } = resolveKeyAuthOptions(options, 'apiKeyAuth');
  const optional = options.optional ?? false;

  /** The identity a key stands for, or the denial to send; rejects only when mapIdentity throws. */
  async function identify(key: string): Promise<{ identity?: Identity; denial?: ApiError }> {
    let check: KeyCheck;
    try {
      check = await checkApiKey(key, lookup, { timeoutMs, now: Date.now() });
    } catch (error) {
      onStoreError(error);
      return { denial: authUnavailable(error) };
    }
    if (!check.ok) return { denial: invalidCredentials(realm, true, KEY_REJECTION_MESSAGES[check.reason]) };
    const identity = identityFromRecord(check.record, 'api_key');
    return { identity: mapIdentity ? mapIdentity(identity, check.record) : identity };
  }

  return function tollgateApiKeyAuth(req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void): void {
    const context = getContext(req, res);
    if (isAuthenticated(context.identity)) return next();

    const credential = readCredential(req);
    const looksLikeKey = credential.kind === 'token' && (keyFormat === null || keyFormat.test(credential.token));
    if (!looksLikeKey) {
      if (optional && credential.kind !== 'malformed') {
        context.identity ??= anonymousIdentity();
        return next();
      }
      const message = credential.kind === 'none' ? undefined : KEY_REJECTION_MESSAGES[credential.kind === 'malformed' ? 'malformed' : 'unknown'];
      return renderError(invalidCredentials(realm, credential.kind !== 'none', message), req, res);
    }

    // catch, not a second then-argument: a renderError that throws must reach next too, not become an unhandled rejection.
    void identify(credential.token)
      .then(({ identity, denial }) => {
        if (denial || !identity) return renderError(denial ?? invalidCredentials(realm, true), req, res);
        context.identity = identity;
        next();
      })
      .catch(next);
  };
}
