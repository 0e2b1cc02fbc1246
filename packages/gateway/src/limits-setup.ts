// Tier rules and rate limits from the config: tierPolicy, tieredRateLimit, tokenRateLimit, concurrencyLimit.
import type { Request, RequestHandler } from 'express';
import { identityFromRecord, judgeKeyRecord } from '@tollgate/auth';
import {
  concurrencyLimit,
  describeWindow,
  readLimits,
  tieredRateLimit,
  tierPolicy,
  tokenRateLimit,
} from '@tollgate/ratelimit';
import type { LimitLayerOptions, LimitReading, StoresWithCommands } from '@tollgate/ratelimit';
import { refusalRenderer } from '@tollgate/core';
import { shadowMode } from '@tollgate/core/kit';
import { resolveTierModels } from '@tollgate/core/kit';
import type { ApiKeyRecord } from '@tollgate/core/kit';
import type { Identity, TollgateStores } from '@tollgate/core';
import type { QuotaStatus } from '@tollgate/dashboard';
import { identityTierResolver } from './auth-setup.js';
import type { ProxyConfig, TierConfig } from './config/index.js';

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

/** A tier without a limit of some kind is not limited by it: a ceiling no caller reaches. */
const UNLIMITED = 1_000_000_000;

/** The tier of callers whose identity names none (keys without tier or tenant tier). */
export function defaultTierOf(config: ProxyConfig): string | undefined {
  return config.defaultTier ?? (config.tiers && Object.hasOwn(config.tiers, 'free') ? 'free' : undefined);
}

/** One limit of a tier, by tier name (a tier without it is unlimited by it); undefined when no tier sets it. */
function perTier(
  config: ProxyConfig,
  limitOf: (tier: TierConfig) => number | undefined,
): Record<string, number> | undefined {
  const tiers = Object.entries(config.tiers ?? {});
  if (!tiers.some(([, tier]) => limitOf(tier) !== undefined)) return undefined;
  return Object.fromEntries(tiers.map(([name, tier]) => [name, limitOf(tier) ?? UNLIMITED]));
}

/** What a guard's throttle multiplies a caller's tier limit by (the global ceiling is nobody's own). */
export type LimitScale = (req: Request) => number;

/** One limit's numbers by tier: over each tenant (`tenant`), and over each key (`key`, from the tier's `perKey`). */
interface TierLimits {
  tenant: Record<string, number> | undefined;
  key: Record<string, number> | undefined;
}

/** The windows a tier counts in: a minute and a day, each layer named for whom it counts and, past the minute, its window. */
const TIER_WINDOWS = {
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
 * The tier layers of one window: per tenant by tier (a key without a tenant counts as its own tenant), and per key by
 * the tier's `perKey`, named `tenant`/`key` plus the window's suffix.
 */
function tierLayers(
  config: ProxyConfig,
  tiers: TierLimits,
  window: string,
  suffix: string,
  limitScale?: LimitScale,
): LimitLayerOptions[] {
  const result: LimitLayerOptions[] = [];
  const defaultTier = defaultTierOf(config);
  for (const by of ['tenant', 'key'] as const) {
    const limits = tiers[by];
    if (!limits) continue;
    // A caller whose tier is unknown gets the default tier's limit, or the smallest one: never more than configured.
    const fallback =
      defaultTier !== undefined && limits[defaultTier] !== undefined
        ? limits[defaultTier]
        : Math.min(...Object.values(limits));
    result.push({
      name: `${by}${suffix}`,
      by,
      tiers: limits,
      limit: fallback,
      window,
      ...(defaultTier ? { defaultTier } : {}),
      ...(limitScale ? { limitScale } : {}),
    });
  }
  return result;
}

/**
 * Layers of one limiter: the global ceiling per minute (if any), then the tiers' limits over each tenant and over each
 * key (`perKey`), per minute and per day. All are counted in one check, and each must allow the request.
 */
function layers(
  config: ProxyConfig,
  kind: 'requests' | 'tokens',
  global: number | undefined,
  limitScale?: LimitScale,
): LimitLayerOptions[] {
  const result: LimitLayerOptions[] = [];
  if (global !== undefined) result.push({ name: 'global', by: 'global', limit: global, window: '1m' });
  for (const { field, window, suffix } of TIER_WINDOWS[kind]) {
    const limits = {
      tenant: perTier(config, (tier) => tier[field]),
      key: perTier(config, (tier) => tier.perKey?.[field]),
    };
    result.push(...tierLayers(config, limits, window, suffix, limitScale));
  }
  return result;
}

/**
 * Shadow mode from the config: a request of a tier or a tenant with `"shadow": true`, or every request with
 * `global.shadow`, is served where a limit, a budget or the guard would refuse it, and the refusal is recorded (core
 * `shadowMode`). Mounted right after auth, before anything it shadows; none when nothing is shadowed.
 */
export function shadowMiddleware(config: ProxyConfig): RequestHandler[] {
  if (config.global?.shadow) return [shadowMode(true)];
  const named = (entries: Record<string, { shadow?: boolean }> | undefined) =>
    new Set(Object.entries(entries ?? {}).flatMap(([name, entry]) => (entry.shadow ? [name] : [])));
  const tiers = named(config.tiers);
  const tenants = named(config.tenants);
  if (tiers.size === 0 && tenants.size === 0) return [];
  return [
    shadowMode(function shadowedByConfig(req) {
      const identity = (req as Request).tollgate?.identity;
      return (
        (identity?.tier !== undefined && tiers.has(identity.tier)) ||
        (identity?.tenantId !== undefined && tenants.has(identity.tenantId))
      );
    }),
  ];
}

/** Model allowlist and output cap per tier (clamps the cap before the estimate so reservations are true bounds). */
export function tierPolicyMiddleware(config: ProxyConfig): RequestHandler {
  const defaultTier = defaultTierOf(config);
  const tiers =
    config.tiers &&
    Object.fromEntries(
      Object.entries(config.tiers).map(([name, tier]) => [
        name,
        {
          ...(tier.models ? { models: tier.models } : {}),
          ...(tier.maxOutputTokens ? { maxOutputTokens: tier.maxOutputTokens } : {}),
        },
      ]),
    );
  return tierPolicy({ ...(tiers ? { tiers } : {}), ...(defaultTier ? { defaultTier } : {}) });
}

/** The model patterns each tier may use: tierPolicy's rule (core `resolveTierModels`), for the model list. */
export function tierModelsOf(config: ProxyConfig): (tier: string | undefined) => readonly string[] | undefined {
  const entries = Object.entries(config.tiers ?? {});
  const tiers = config.tiers && Object.fromEntries(entries.map(([name, tier]) => [name, tier.models]));
  const defaultTier = defaultTierOf(config);
  return resolveTierModels(tiers, defaultTier ? { defaultTier } : {});
}

export function requestLimitMiddleware(
  config: ProxyConfig,
  stores: TollgateStores,
  storeFailures?: StoreFailureHandlers,
  limitScale?: LimitScale,
): RequestHandler[] {
  const requestLayers = layers(config, 'requests', config.global?.requestsPerMinute, limitScale);
  if (requestLayers.length === 0) return [];
  // Redis stores put the request counters under their own prefix ('<prefix>rl:').
  return [
    tieredRateLimit({
      stores: stores as StoresWithCommands,
      layers: requestLayers,
      ...reporting('requests', storeFailures),
    }),
  ];
}

/**
 * MCP tool calls per minute of each tenant by its tier's `toolCallsPerMinute` (a key without a tenant counts alone),
 * counted apart from the request limits (`rl:tools:` counters); none when no tier sets it.
 */
export function toolCallLimitMiddleware(
  config: ProxyConfig,
  stores: TollgateStores,
  storeFailures?: StoreFailureHandlers,
  limitScale?: LimitScale,
): RequestHandler[] {
  const tenant = perTier(config, (tier) => tier.toolCallsPerMinute);
  if (!tenant) return [];
  const toolLayers = tierLayers(config, { tenant, key: undefined }, '1m', '', limitScale).map((layer) => ({
    ...layer,
    // The refusal names it: "Rate limit reached for requests (toolCalls): limit 120 per 1 minute".
    name: 'toolCalls',
  }));
  return [
    tieredRateLimit({
      stores: stores as StoresWithCommands,
      layers: toolLayers,
      prefix: 'rl:tools:',
      ...reporting('requests', storeFailures),
    }),
  ];
}

export function concurrencyMiddleware(
  config: ProxyConfig,
  stores: TollgateStores,
  storeFailures?: StoreFailureHandlers,
): RequestHandler[] {
  const tiers = perTier(config, (tier) => tier.maxConcurrent);
  if (!tiers) return [];
  const defaultTier = defaultTierOf(config);
  return [
    concurrencyLimit({
      stores,
      tiers,
      by: 'key',
      limit: Math.min(...Object.values(tiers)),
      ...(defaultTier ? { defaultTier } : {}),
      ...reporting('concurrency', storeFailures),
    }),
  ];
}

export function tokenLimitMiddleware(
  config: ProxyConfig,
  stores: TollgateStores,
  storeFailures?: StoreFailureHandlers,
  limitScale?: LimitScale,
): RequestHandler[] {
  const tokenLayers = layers(config, 'tokens', config.global?.tokensPerMinute, limitScale);
  if (tokenLayers.length === 0) return [];
  return [tokenRateLimit({ stores, layers: tokenLayers, ...reporting('tokens', storeFailures) })];
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

/**
 * The dashboard's request and token quotas, live: what the chain's limiters (`limits`, their combineLimits) count
 * now, read from their stores through the same wrappers, counting nothing. The overview gets the global layer and
 * each tenant's (the config's tenants and those of usable keys); a tenant's page its tenant layers and each of its
 * usable keys' layers (requests and tokens per minute and per day, requests in flight). A tenant is read at its tier; a key at
 * its own, as auth resolves it.
 */
export function dashboardQuotas(
  config: ProxyConfig,
  limits: RequestHandler,
  keys: () => Promise<readonly ApiKeyRecord[]>,
): (query?: { tenantId?: string }) => Promise<QuotaStatus[]> {
  const withTier = identityTierResolver(config);
  // Each subject's layers in every window: a quota per window (its `window` says which).
  const tenantLayers = layerNamesOf('tenant');
  const keyLayers = layerNamesOf('key');
  const tenantCaller = (tenantId: string): Identity =>
    withTier({ keyId: `tenant:${tenantId}`, tenantId, scopes: [], authMethod: 'api_key' });
  const read = async (caller: Identity, layers: readonly string[], name: string, tenantId?: string) =>
    (await readLimits(limits, caller, { layers })).map((reading) => quotaOf(reading, name, tenantId));
  return async function readQuotas({ tenantId } = {}) {
    const now = Date.now();
    const usable = (await keys()).filter((record) => judgeKeyRecord(record.sha256, record, now).ok);
    if (tenantId !== undefined) {
      const own = usable.filter((record) => record.tenantId === tenantId);
      const quotas = await Promise.all([
        read(tenantCaller(tenantId), tenantLayers, `tenant ${tenantId}`, tenantId),
        ...own.map((record) =>
          read(withTier(identityFromRecord(record, 'api_key')), keyLayers, `key ${record.id}`, tenantId),
        ),
      ]);
      return quotas.flat();
    }
    const tenants = new Set([
      ...Object.keys(config.tenants ?? {}),
      ...usable.flatMap((record) => (record.tenantId === undefined ? [] : [record.tenantId])),
    ]);
    // The global layer counts everyone alike: any caller reads it.
    const quotas = await Promise.all([
      read(tenantCaller('(any)'), ['global'], 'global'),
      ...[...tenants].sort().map((id) => read(tenantCaller(id), tenantLayers, `tenant ${id}`, id)),
    ]);
    return quotas.flat();
  };
}
