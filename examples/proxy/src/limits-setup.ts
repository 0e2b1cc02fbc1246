// Tier rules and rate limits from the config: tierPolicy, tieredRateLimit, tokenRateLimit, concurrencyLimit.
import type { Request, RequestHandler } from 'express';
import { concurrencyLimit, tieredRateLimit, tierPolicy, tokenRateLimit } from '@tollgate/ratelimit';
import type { LimitLayerOptions, StoresWithCommands } from '@tollgate/ratelimit';
import { refusalRenderer } from '@tollgate/core';
import type { TollgateStores } from '@tollgate/core';
import type { ProxyConfig, TierConfig } from './config.js';

/** Store failures a limiter met, by its layer: logged and counted (see access-log.ts). @default the limiters' own throttled warning */
export type StoreFailureHandlers = (layer: 'requests' | 'tokens' | 'concurrency') => ((error: unknown) => void) | undefined;

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

function perTier(config: ProxyConfig, field: keyof Pick<TierConfig, 'requestsPerMinute' | 'tokensPerMinute' | 'maxConcurrent'>): Record<string, number> | undefined {
  const tiers = Object.entries(config.tiers ?? {});
  if (!tiers.some(([, tier]) => tier[field] !== undefined)) return undefined;
  return Object.fromEntries(tiers.map(([name, tier]) => [name, tier[field] ?? UNLIMITED]));
}

/** What a guard's throttle multiplies a caller's tier limit by (the global ceiling is nobody's own). */
export type LimitScale = (req: Request) => number;

/** Layers of one limiter: the global ceiling (if any), then per tenant by tier (a key without a tenant counts alone). */
function layers(config: ProxyConfig, tiers: Record<string, number> | undefined, global: number | undefined, limitScale?: LimitScale): LimitLayerOptions[] {
  const result: LimitLayerOptions[] = [];
  if (global !== undefined) result.push({ name: 'global', by: 'global', limit: global, window: '1m' });
  if (tiers) {
    const defaultTier = defaultTierOf(config);
    // A caller whose tier is unknown gets the default tier's limit, or the smallest one: never more than configured.
    const fallback = defaultTier !== undefined && tiers[defaultTier] !== undefined ? tiers[defaultTier] : Math.min(...Object.values(tiers));
    result.push({ name: 'tenant', by: 'tenant', tiers, limit: fallback, window: '1m', ...(defaultTier ? { defaultTier } : {}), ...(limitScale ? { limitScale } : {}) });
  }
  return result;
}

/** Model allowlist and output cap per tier (clamps the cap before the estimate so reservations are true bounds). */
export function tierPolicyMiddleware(config: ProxyConfig): RequestHandler {
  const defaultTier = defaultTierOf(config);
  const tiers = Object.fromEntries(Object.entries(config.tiers ?? {}).map(([name, tier]) => [
    name,
    { ...(tier.models ? { models: tier.models } : {}), ...(tier.maxOutputTokens ? { maxOutputTokens: tier.maxOutputTokens } : {}) },
  ]));
  return tierPolicy({ tiers, ...(defaultTier ? { defaultTier } : {}) });
}

export function requestLimitMiddleware(config: ProxyConfig, stores: TollgateStores, storeFailures?: StoreFailureHandlers, limitScale?: LimitScale): RequestHandler[] {
  const requestLayers = layers(config, perTier(config, 'requestsPerMinute'), config.global?.requestsPerMinute, limitScale);
  if (requestLayers.length === 0) return [];
  // Redis stores put the request counters under their own prefix ('<prefix>rl:').
  return [tieredRateLimit({ stores: stores as StoresWithCommands, layers: requestLayers, ...reporting('requests', storeFailures) })];
}

export function concurrencyMiddleware(config: ProxyConfig, stores: TollgateStores, storeFailures?: StoreFailureHandlers): RequestHandler[] {
  const tiers = perTier(config, 'maxConcurrent');
  if (!tiers) return [];
  const defaultTier = defaultTierOf(config);
  return [concurrencyLimit({
    stores, tiers, by: 'key', limit: Math.min(...Object.values(tiers)), ...(defaultTier ? { defaultTier } : {}), ...reporting('concurrency', storeFailures),
  })];
}

export function tokenLimitMiddleware(config: ProxyConfig, stores: TollgateStores, storeFailures?: StoreFailureHandlers, limitScale?: LimitScale): RequestHandler[] {
  const tokenLayers = layers(config, perTier(config, 'tokensPerMinute'), config.global?.tokensPerMinute, limitScale);
  if (tokenLayers.length === 0) return [];
  return [tokenRateLimit({ stores, layers: tokenLayers, ...reporting('tokens', storeFailures) })];
}
