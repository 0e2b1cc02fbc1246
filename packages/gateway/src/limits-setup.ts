// Tier rules and rate limits: tierPolicy, tieredRateLimit, tokenRateLimit, concurrencyLimit, over their options.
import type { Request, RequestHandler } from 'express';
import { identityFromRecord, judgeKeyRecord } from '@tollgate/auth';
import { describeWindow, readLimits } from '@tollgate/ratelimit';
import type {
  ConcurrencyLimitOptions,
  LimitLayerOptions,
  LimitReading,
  TieredRateLimitOptions,
  TierPolicyOptions,
  TokenRateLimitOptions,
} from '@tollgate/ratelimit';
import { refusalRenderer } from '@tollgate/core';
import { shadowMode } from '@tollgate/core/checks';
import { resolveTierModels } from '@tollgate/core/checks';
import type { ApiKeyRecord } from '@tollgate/core/store-contracts';
import type { Identity } from '@tollgate/core';
import type { QuotaStatus } from '@tollgate/dashboard';
import { identityTierResolver } from './auth-setup.js';
import type { TierAssignment } from './auth-setup.js';

/** Store failures a limiter met, by its layer: logged and counted (see access-log.ts). @default the limiters' own throttled warning */
export type StoreFailureHandlers = (
  layer: 'requests' | 'tokens' | 'concurrency',
) => ((error: unknown) => void) | undefined;

/**
 * What every limiter is given: a renderer naming its layer (a concurrency 429 and a request-limit 429 share a code;
 * every store's 503 shares one), and where its store failures go.
 */
function reporting(layer: 'requests' | 'tokens' | 'concurrency', storeFailures: StoreFailureHandlers | undefined) {
  const onStoreError = storeFailures?.(layer);
  return { renderError: refusalRenderer(layer), ...(onStoreError ? { onStoreError } : {}) };
}

/** Who shadow mode serves where a limit, a budget or the guard would refuse (the refusal recorded). */
export interface ShadowPlan {
  /** Every request. */
  all: boolean;
  tiers: readonly string[];
  tenants: readonly string[];
}

/** The limits of the chain, as the ratelimit package's limiters take them. */
export interface LimitOptions {
  /** tieredRateLimit's layers: the global ceiling, then each tier's per tenant and per key, per minute and per day. */
  requestLayers: LimitLayerOptions[];
  /** tokenRateLimit's layers, in the same order. */
  tokenLayers: LimitLayerOptions[];
  /** MCP tool calls per minute of each tenant, by tier (counted apart from the request limits). */
  toolCallLayers: LimitLayerOptions[];
  /** Requests in flight per key, by tier; none when no tier sets it. */
  concurrency?: Pick<ConcurrencyLimitOptions, 'tiers' | 'limit' | 'defaultTier'> | undefined;
  /** Model allowlists and output caps per tier. */
  tierPolicy: TierPolicyOptions;
  shadow: ShadowPlan;
}

/**
 * The windows a tier counts in: a minute and a day, each layer named for whom it counts and, past the minute, its
 * window (the tier's field it is read from beside).
 */
export const TIER_WINDOWS = {
  requests: [
    { field: 'requestsPerMinute', window: '1m', suffix: '' },
    { field: 'requestsPerDay', window: '1d', suffix: '-day' },
  ],
  tokens: [
    { field: 'tokensPerMinute', window: '1m', suffix: '' },
    { field: 'tokensPerDay', window: '1d', suffix: '-day' },
  ],
} as const;

/** The layer names of one subject in every window (`tenant`, `tenant-day`): what readLimits reads for it. */
function layerNamesOf(by: 'tenant' | 'key'): string[] {
  return TIER_WINDOWS.requests.map(({ suffix }) => `${by}${suffix}`);
}

/**
 * Shadow mode: a request of a tier or a tenant the plan names, or every request with `all`, is served where a limit,
 * a budget or the guard would refuse it, and the refusal is recorded (core `shadowMode`). Mounted right after auth,
 * before anything it shadows; none when nothing is shadowed.
 */
export function shadowMiddleware(shadow: ShadowPlan, storedShadow?: (tenantId: string) => boolean): RequestHandler[] {
  if (shadow.all) return [shadowMode(true)];
  const tiers = new Set(shadow.tiers);
  const tenants = new Set(shadow.tenants);
  if (tiers.size === 0 && tenants.size === 0 && !storedShadow) return [];
  return [
    shadowMode(function shadowedByConfig(req) {
      const identity = (req as Request).tollgate?.identity;
      const tenantId = identity?.tenantId;
      return (
        (identity?.tier !== undefined && tiers.has(identity.tier)) ||
        (tenantId !== undefined && (tenants.has(tenantId) || storedShadow?.(tenantId) === true))
      );
    }),
  ];
}

/** The model patterns each tier may use: tierPolicy's rule (core `resolveTierModels`), for the model list. */
export function tierModelsOf(options: TierPolicyOptions): (tier: string | undefined) => readonly string[] | undefined {
  const tiers =
    options.tiers && Object.fromEntries(Object.entries(options.tiers).map(([name, tier]) => [name, tier.models]));
  return resolveTierModels(tiers, options.defaultTier ? { defaultTier: options.defaultTier } : {});
}

/** The limiters' options as @tollgate/ratelimit takes them (tollgate()'s `limits`, and MCP's `toolCalls`). */
export interface LimiterOptions {
  requests?: Omit<TieredRateLimitOptions, 'stores'>;
  tokens?: Omit<TokenRateLimitOptions, 'stores'>;
  concurrency?: Omit<ConcurrencyLimitOptions, 'stores'>;
  /**
   * MCP tool calls per minute of each tenant by its tier's `toolCallsPerMinute` (a key without a tenant counts alone),
   * counted apart from the request limits (`rl:tools:` counters).
   */
  toolCalls?: Omit<TieredRateLimitOptions, 'stores'>;
}

/**
 * Each limiter the options configure, as its package takes it: its layers (a guard's throttle is put on them where
 * they are made), a renderer naming its layer and where its store failures go; none for a limit no tier sets.
 */
export function limiterOptions(options: LimitOptions, storeFailures?: StoreFailureHandlers): LimiterOptions {
  const { requestLayers, tokenLayers, toolCallLayers, concurrency } = options;
  return {
    // Redis stores put the request counters under their own prefix ('<prefix>rl:').
    ...(requestLayers.length > 0
      ? { requests: { layers: requestLayers, ...reporting('requests', storeFailures) } }
      : {}),
    ...(tokenLayers.length > 0 ? { tokens: { layers: tokenLayers, ...reporting('tokens', storeFailures) } } : {}),
    ...(concurrency
      ? { concurrency: { by: 'key' as const, ...concurrency, ...reporting('concurrency', storeFailures) } }
      : {}),
    ...(toolCallLayers.length > 0
      ? { toolCalls: { layers: toolCallLayers, prefix: 'rl:tools:', ...reporting('requests', storeFailures) } }
      : {}),
  };
}

/** A quota as the dashboard shows it: one layer of one limiter, for whom it counts. */
function quotaOf(reading: LimitReading, name: string, tenantId: string | undefined): QuotaStatus {
  return {
    name,
    ...(tenantId === undefined ? {} : { tenantId }),
    unit: reading.kind,
    ...(reading.windowMs === undefined ? {} : { window: describeWindow(reading.windowMs) }),
    limit: reading.limit,
    used: reading.used,
    remaining: reading.remaining,
    ...(reading.resetAt === undefined ? {} : { resetAt: new Date(reading.resetAt).toISOString() }),
  };
}

/** The config's tenants the overview reads the quotas of beside those it shows, while there are no more than this. */
const OVERVIEW_CONFIG_TENANTS = 200;

/**
 * The dashboard's request and token quotas, live: what the chain's limiters (`limits`, their combineLimits) count
 * now, read from their stores through the same wrappers, counting nothing. The overview gets the global layer and
 * the tenant layers of the tenants it shows (`tenantIds`) and of the config's while they are few; a tenant's page its
 * tenant layers and those of its usable keys on the page (requests and tokens per minute and per day, requests in
 * flight). A tenant is read at its tier; a key at its own, as auth resolves it.
 */
export function dashboardQuotas(
  subjects: { tiers: TierAssignment; tenants: readonly string[] },
  limits: RequestHandler,
  /** The keys of tenant `tenantId` its page shows: one page of the store, never all of it. */
  keys: (tenantId: string) => Promise<readonly ApiKeyRecord[]>,
): (query?: { tenantId?: string; tenantIds?: readonly string[] }) => Promise<QuotaStatus[]> {
  const withTier = identityTierResolver(subjects.tiers);
  // Each subject's layers in every window: a quota per window (its `window` says which).
  const tenantLayers = layerNamesOf('tenant');
  const keyLayers = layerNamesOf('key');
  const tenantCaller = (tenantId: string): Identity =>
    withTier({ keyId: `tenant:${tenantId}`, tenantId, scopes: [], authMethod: 'api_key' });
  const read = async (caller: Identity, layers: readonly string[], name: string, tenantId?: string) =>
    (await readLimits(limits, caller, { layers })).map((reading) => quotaOf(reading, name, tenantId));
  return async function readQuotas({ tenantId, tenantIds } = {}) {
    if (tenantId !== undefined) {
      const now = Date.now();
      const own = (await keys(tenantId)).filter(
        (record) => record.tenantId === tenantId && judgeKeyRecord(record.sha256, record, now).ok,
      );
      const quotas = await Promise.all([
        read(tenantCaller(tenantId), tenantLayers, `tenant ${tenantId}`, tenantId),
        ...own.map((record) =>
          read(withTier(identityFromRecord(record, 'api_key')), keyLayers, `key ${record.id}`, tenantId),
        ),
      ]);
      return quotas.flat();
    }
    // The overview's: the tenants it shows, and the config's while they are few; never every key read for its tenant.
    const configured = subjects.tenants.length <= OVERVIEW_CONFIG_TENANTS ? subjects.tenants : [];
    const tenants = new Set([...(tenantIds ?? []), ...configured]);
    // The global layer counts everyone alike: any caller reads it.
    const quotas = await Promise.all([
      read(tenantCaller('(any)'), ['global'], 'global'),
      ...[...tenants].sort().map((id) => read(tenantCaller(id), tenantLayers, `tenant ${id}`, id)),
    ]);
    return quotas.flat();
  };
}
