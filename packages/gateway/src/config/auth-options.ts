// The config's keys, `jwt`, `requiredScope`, `attribution` and tenants' tiers as the gateway's auth takes them.
import type { AttributionOptions, JwtVerifyOptions } from '@tollgate/auth';
import type { AuthOptions, TierAssignment } from '../auth-setup.js';
import { keyNamesOf, keyReferenceProblems } from './key-names.js';
import type { JwtConfig, GatewayConfig } from './schema.js';

/** A static JWKS as apiKeyAuth's `jwt` takes it (the schema checked its shape). */
type JwtKeySet = Exclude<NonNullable<JwtVerifyOptions['jwks']>, string | URL>;

/** The tier of callers whose identity names none (nor their tenant): `defaultTier`, else "free" when defined. */
export function defaultTierOf(config: GatewayConfig): string | undefined {
  return config.defaultTier ?? (config.tiers && Object.hasOwn(config.tiers, 'free') ? 'free' : undefined);
}

/**
 * The config file's tenants' tiers, and the default one. The gateway's parts swap `tierOfTenant` for its tenant
 * lookup (TenantDirectory), which adds the stored tenants.
 */
function tierAssignment(config: GatewayConfig): TierAssignment {
  const tenants = config.tenants ?? {};
  return {
    tierOfTenant: (id) => (Object.hasOwn(tenants, id) ? tenants[id]!.tier : undefined),
    defaultTier: defaultTierOf(config),
  };
}

/** The config's `jwt` section as apiKeyAuth's `jwt` option (auth adds the tier mapping). */
function jwtVerifyOptions(jwt: JwtConfig): Omit<JwtVerifyOptions, 'mapIdentity'> {
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
    ...(jwt.teamClaim ? { teamClaim: jwt.teamClaim } : {}),
  };
}

/** The config's `attribution`, with the session headers of its `sessions`, as attribution() takes them. */
export function attributionOptionsOf(config: GatewayConfig): AttributionOptions {
  const headers = config.sessions?.headers;
  const tenants = config.tenants ?? {};
  return {
    ...config.attribution,
    ...(headers === undefined ? {} : { sessionHeaders: headers }),
    isTeam: (tenantId, team) => Object.hasOwn(tenants, tenantId) && Object.hasOwn(tenants[tenantId]!.teams ?? {}, team),
  };
}

/** How callers are identified: the config's keys, its JWTs, its scope and attribution, its tenants' tiers. */
export function authOptions(config: GatewayConfig): AuthOptions {
  const names = keyNamesOf(config);
  return {
    keys: config.keys ?? [],
    ...(config.jwt ? { jwt: jwtVerifyOptions(config.jwt) } : {}),
    ...(config.requiredScope ? { requiredScope: config.requiredScope } : {}),
    attribution: attributionOptionsOf(config),
    tiers: tierAssignment(config),
    keyProblems: (key, at) => keyReferenceProblems(names, key, at),
  };
}
