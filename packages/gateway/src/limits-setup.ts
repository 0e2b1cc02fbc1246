// Tier rules and rate limits from the config: tierPolicy, tieredRateLimit, tokenRateLimit, concurrencyLimit.
import type { Request, RequestHandler } from 'express';
import { concurrencyLimit, tieredRateLimit, tierPolicy, tokenRateLimit } from '@tollgate/ratelimit';
import type { LimitLayerOptions, StoresWithCommands } from '@tollgate/ratelimit';
import { refusalRenderer } from '@tollgate/core';
import { resolveTierModels } from '@tollgate/core/kit';
import type { TollgateStores } from '@tollgate/core';
import type { ProxyConfig, TierConfig } from './config.js';

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

/**
 * Layers of one limiter: the global ceiling (if any), per tenant by tier (a key without a tenant counts as its own
 * tenant), and per key by the tier's `perKey`. All are counted in one check, and each must allow the request.
 */
function layers(config: ProxyConfig, tiers: TierLimits, global: number | undefined, limitScale?: LimitScale) {
  const result: LimitLayerOptions[] = [];
  if (global !== undefined) result.push({ name: 'global', by: 'global', limit: global, window: '1m' });
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
      name: by,
      by,
      tiers: limits,
      limit: fallback,
      window: '1m',
      ...(defaultTier ? { defaultTier } : {}),
      ...(limitScale ? { limitScale } : {}),
    });
  }
  return result;
}

/** A limit of the tiers over each tenant (`field`), and over each key (the same field of `perKey`). */
function tierLimits(config: ProxyConfig, field: 'requestsPerMinute' | 'tokensPerMinute'): TierLimits {
  return { tenant: perTier(config, (tier) => tier[field]), key: perTier(config, (tier) => tier.perKey?.[field]) };
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
  const global = config.global?.requestsPerMinute;
  const requestLayers = layers(config, tierLimits(config, 'requestsPerMinute'), global, limitScale);
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
  const global = config.global?.tokensPerMinute;
  const tokenLayers = layers(config, tierLimits(config, 'tokensPerMinute'), global, limitScale);
  if (tokenLayers.length === 0) return [];
  return [tokenRateLimit({ stores, layers: tokenLayers, ...reporting('tokens', storeFailures) })];
}
