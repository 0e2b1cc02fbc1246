// Who is calling, from the config: API keys (config `keys` + the shared key store), optional JWTs, the required scope.
import type { RequestHandler } from 'express';
import { apiKeyAuth, attribution, keyRecordsFromConfig, requireScope } from '@tollgate/auth';
import type { JwtVerifyOptions } from '@tollgate/auth';
import { refusalRenderer } from '@tollgate/core';
import type { Identity, TollgateStores } from '@tollgate/core';
import type { ApiKeyRecord } from '@tollgate/core/kit';
import { keyNamesOf, keyReferenceProblems } from './config/index.js';
import type { KeyConfig, ProxyConfig } from './config/index.js';
import { defaultTierOf } from './limits-setup.js';

/** A static JWKS as apiKeyAuth's `jwt` takes it (the config validated its shape). */
type JwtKeySet = Exclude<NonNullable<JwtVerifyOptions['jwks']>, string | URL>;

/** The tier of an identity that names none: its tenant's tier, else the config's default tier. */
export function identityTierResolver(config: ProxyConfig): (identity: Identity) => Identity {
  const tenants = config.tenants ?? {};
  const defaultTier = defaultTierOf(config);
  return function resolveIdentityTier(identity) {
    if (identity.tier !== undefined) return identity;
    const tenant =
      identity.tenantId !== undefined && Object.hasOwn(tenants, identity.tenantId)
        ? tenants[identity.tenantId]
        : undefined;
    const tier = tenant?.tier ?? defaultTier;
    // Object.assign, not `{ ...identity, tier }`: a property after a leading spread is slow on Node 20.
    return tier === undefined ? identity : Object.assign({}, identity, { tier });
  };
}

/** Key lookup by hash: the config's keys (replaceable while running), then the shared key store. */
export interface KeyLookup {
  /** The record at once when the config or a memory store has it; a promise when the store must be asked. */
  find(sha256: string): Promise<ApiKeyRecord | undefined> | ApiKeyRecord | undefined;
  /** Swap in the config's keys (after the config file changed). Throws on invalid entries, keeping the old ones. */
  replaceConfigKeys(keys: readonly KeyConfig[]): void;
}

/**
 * Config keys are looked up first (no store round trip), then the shared key store (keys made
 * with `pnpm tollgate keys create --redis`, or through /admin/keys).
 */
export function createKeyLookup(
  config: ProxyConfig,
  stores: TollgateStores,
  log: (line: string) => void = () => undefined,
): KeyLookup {
  const index = (keys: readonly KeyConfig[]) =>
    new Map(keyRecordsFromConfig(keys).map((record) => [record.sha256, record]));
  let fromConfig = index(config.keys ?? []);
  const servable = storedKeyCheck(config, log);
  return {
    find(sha256) {
      const keys = stores.keys;
      const configured = fromConfig.get(sha256);
      if (configured) return configured;
      const stored = keys.findByHashSync ? keys.findByHashSync(sha256) : keys.findByHash(sha256);
      return stored instanceof Promise ? stored.then(servable) : servable(stored);
    },
    replaceConfigKeys(keys) {
      fromConfig = index(keys);
    },
  };
}

/**
 * A key from the key store is served only when the config knows what it names (the rule the config's own keys pass
 * at start, keyReferenceProblems): one naming an unknown tier would run on the default tier, one naming an unknown
 * tenant with no tenant budget. Such a key is refused as unknown, and said once at error level.
 */
function storedKeyCheck(config: ProxyConfig, log: (line: string) => void) {
  const names = keyNamesOf(config);
  const judged = new WeakMap<ApiKeyRecord, boolean>();
  return function servableStoredKey(record: ApiKeyRecord | undefined): ApiKeyRecord | undefined {
    if (!record) return undefined;
    let ok = judged.get(record);
    if (ok === undefined) {
      const problems = keyReferenceProblems(
        names,
        { tenant: record.tenantId, tier: record.tier, tools: record.tools },
        `key "${record.id}"`,
      );
      ok = problems.length === 0;
      judged.set(record, ok);
      if (!ok) log(`tollgate proxy: refused a key from the key store: ${problems.join('; ')}`);
    }
    return ok ? record : undefined;
  };
}

/** The config's `jwt` section as apiKeyAuth's `jwt` option. */
function jwtVerifyOptions(
  jwt: NonNullable<ProxyConfig['jwt']>,
  mapIdentity: (identity: Identity) => Identity,
): JwtVerifyOptions {
  return {
    ...(jwt.jwks ? { jwks: jwt.jwks as unknown as JwtKeySet } : {}),
    ...(jwt.jwksUrl ? { jwksUrl: jwt.jwksUrl } : {}),
    ...(jwt.issuer ? { issuer: jwt.issuer } : {}),
    ...(jwt.audience ? { audience: jwt.audience } : {}),
    ...(jwt.algorithms ? { algorithms: jwt.algorithms } : {}),
    ...(jwt.tenantClaim ? { tenantClaim: jwt.tenantClaim } : {}),
    ...(jwt.tierClaim ? { tierClaim: jwt.tierClaim } : {}),
    ...(jwt.scopeClaim ? { scopeClaim: jwt.scopeClaim } : {}),
    ...(jwt.userClaim ? { userClaim: jwt.userClaim } : {}),
    mapIdentity,
  };
}

/**
 * Identification: an API key (either header), or with `jwt` configured also a bearer JWT. One
 * middleware for both, so a valid JWT costs no key lookup and every 401 names both kinds. Its
 * refusals, the 503 of a key store that failed included, name the `auth` layer; `onStoreError`
 * hears the key store's failures.
 */
export function authMiddleware(
  config: ProxyConfig,
  keys: KeyLookup,
  onStoreError?: (error: unknown) => void,
): RequestHandler[] {
  const withTier = identityTierResolver(config);
  return [
    apiKeyAuth({
      keys: (sha256) => keys.find(sha256),
      mapIdentity: withTier,
      ...(config.jwt ? { jwt: jwtVerifyOptions(config.jwt, withTier) } : {}),
      renderError: refusalRenderer('auth'),
      ...(onStoreError ? { onStoreError } : {}),
    }) as RequestHandler,
  ];
}

/**
 * The scope check, once the caller is known. Models are checked by the ratelimit package's
 * tierPolicy (tier list, then the key's own `models`), which also clamps the output cap.
 */
export function permissionMiddleware(config: ProxyConfig): RequestHandler[] {
  return config.requiredScope ? [requireScope(config.requiredScope) as RequestHandler] : [];
}

/**
 * Who the request is for, once the caller is known: the end user, feature and tags from the key, then the config's
 * `attribution` headers (and the body's end-user field, once the call is declared), on `req.tollgate.identity` for
 * every later piece (limits, budgets, the usage record). A field `require` lists and the request lacks is 400
 * `attribution_required`, before any limit, reservation or upstream call.
 */
export function attributionMiddleware(config: ProxyConfig): RequestHandler[] {
  return [attribution(config.attribution ?? {}) as RequestHandler];
}
