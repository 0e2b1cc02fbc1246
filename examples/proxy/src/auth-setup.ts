// Who is calling, from the config: API keys (config `keys` + the shared key store), optional JWTs, scope and model allowlist.
import type { RequestHandler } from 'express';
import { apiKeyAuth, jwtAuth, keyRecordsFromConfig, modelAllowlist, requireScope } from '@tollgate/auth';
import type { ApiKeyRecord, Identity, TollgateStores } from '@tollgate/core';
import type { ProxyConfig } from './config.js';

/** The tier of an identity that names none: its tenant's tier, else the config's default tier. */
export function identityTierResolver(config: ProxyConfig): (identity: Identity) => Identity {
  const tiers = config.tiers;
  const tenants = config.tenants ?? {};
  const defaultTier = config.defaultTier ?? (tiers && Object.hasOwn(tiers, 'free') ? 'free' : undefined);
  return function resolveIdentityTier(identity) {
    if (identity.tier !== undefined) return identity;
    const tenant = identity.tenantId !== undefined && Object.hasOwn(tenants, identity.tenantId) ? tenants[identity.tenantId] : undefined;
    const tier = tenant?.tier ?? defaultTier;
    return tier === undefined ? identity : { ...identity, tier };
  };
}

/**
 * Key lookup: the config's keys first (they need no store round trip), then the shared key
 * store (keys created with `pnpm tollgate keys create --redis`).
 */
export function keyLookup(config: ProxyConfig, stores: TollgateStores): (sha256: string) => Promise<ApiKeyRecord | undefined> {
  const fromConfig = new Map(keyRecordsFromConfig(config.keys ?? []).map((record) => [record.sha256, record]));
  return async function findKeyRecord(sha256) {
    return fromConfig.get(sha256) ?? stores.keys.findByHash(sha256);
  };
}

/** The auth part of the chain: identify, then scope, then model allowlist. */
export function authMiddleware(config: ProxyConfig, stores: TollgateStores): RequestHandler[] {
  const withTier = identityTierResolver(config);
  const chain: RequestHandler[] = [
    apiKeyAuth({ keys: keyLookup(config, stores), optional: config.jwt !== undefined, mapIdentity: withTier }) as RequestHandler,
  ];
  if (config.jwt) {
    const jwt = config.jwt;
    chain.push(jwtAuth({
      ...(jwt.jwks ? { jwks: jwt.jwks as never } : {}),
      ...(jwt.jwksUrl ? { jwksUrl: jwt.jwksUrl } : {}),
      ...(jwt.issuer ? { issuer: jwt.issuer } : {}),
      ...(jwt.audience ? { audience: jwt.audience } : {}),
      ...(jwt.algorithms ? { algorithms: jwt.algorithms } : {}),
      ...(jwt.tenantClaim ? { tenantClaim: jwt.tenantClaim } : {}),
      ...(jwt.tierClaim ? { tierClaim: jwt.tierClaim } : {}),
      ...(jwt.scopeClaim ? { scopeClaim: jwt.scopeClaim } : {}),
      ...(jwt.userClaim ? { userClaim: jwt.userClaim } : {}),
      mapIdentity: withTier,
    }) as RequestHandler);
  }
  return chain;
}

/** Scope and model checks, once the caller is known. */
export function permissionMiddleware(config: ProxyConfig): RequestHandler[] {
  const chain: RequestHandler[] = [];
  if (config.requiredScope) chain.push(requireScope(config.requiredScope) as RequestHandler);
  if (config.tiers) {
    const tiers = Object.fromEntries(Object.entries(config.tiers).map(([name, tier]) => [name, tier.models ?? ['*']]));
    chain.push(modelAllowlist({ tiers }) as RequestHandler);
  } else {
    chain.push(modelAllowlist() as RequestHandler);
  }
  return chain;
}
