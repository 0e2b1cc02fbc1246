// The config's tiers and `global` ceilings as the ratelimit package's limiters take them: layers, tier policy, shadow.
import type { LimitLayerOptions, TierPolicyOptions } from '@tollgate/ratelimit';
import { TIER_WINDOWS } from '../limits-setup.js';
import type { LimitOptions, ShadowPlan } from '../limits-setup.js';
import { defaultTierOf } from './auth-options.js';
import type { GatewayConfig, TierConfig } from './schema.js';

/** A tier without a limit of some kind is not limited by it: a ceiling no caller reaches. */
const UNLIMITED = 1_000_000_000;

/** One limit of a tier, by tier name (a tier without it is unlimited by it); undefined when no tier sets it. */
function perTier(
  config: GatewayConfig,
  limitOf: (tier: TierConfig) => number | undefined,
): Record<string, number> | undefined {
  const tiers = Object.entries(config.tiers ?? {});
  if (!tiers.some(([, tier]) => limitOf(tier) !== undefined)) return undefined;
  return Object.fromEntries(tiers.map(([name, tier]) => [name, limitOf(tier) ?? UNLIMITED]));
}

/** One limit's numbers by tier: over each tenant (`tenant`), and over each key (`key`, from the tier's `perKey`). */
interface TierLimits {
  tenant: Record<string, number> | undefined;
  key: Record<string, number> | undefined;
}

/**
 * The tier layers of one window: per tenant by tier (a key without a tenant counts as its own tenant), and per key by
 * the tier's `perKey`, named `tenant`/`key` plus the window's suffix.
 */
function tierLayers(config: GatewayConfig, tiers: TierLimits, window: string, suffix: string): LimitLayerOptions[] {
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
    });
  }
  return result;
}

/**
 * Layers of one limiter: the global ceiling per minute (if any), then the tiers' limits over each tenant and over each
 * key (`perKey`), per minute and per day. All are counted in one check, and each must allow the request.
 */
function layers(config: GatewayConfig, kind: 'requests' | 'tokens', global: number | undefined): LimitLayerOptions[] {
  const result: LimitLayerOptions[] = [];
  if (global !== undefined) result.push({ name: 'global', by: 'global', limit: global, window: '1m' });
  for (const { field, window, suffix } of TIER_WINDOWS[kind]) {
    const limits = {
      tenant: perTier(config, (tier) => tier[field]),
      key: perTier(config, (tier) => tier.perKey?.[field]),
    };
    result.push(...tierLayers(config, limits, window, suffix));
  }
  return result;
}

/** MCP tool calls per minute of each tenant, by its tier's `toolCallsPerMinute`: one layer named `toolCalls`. */
function toolCallLayers(config: GatewayConfig): LimitLayerOptions[] {
  const tenant = perTier(config, (tier) => tier.toolCallsPerMinute);
  if (!tenant) return [];
  // The refusal names it: "Rate limit reached for requests (toolCalls): limit 120 per 1 minute".
  return tierLayers(config, { tenant, key: undefined }, '1m', '').map((layer) => ({ ...layer, name: 'toolCalls' }));
}

/** Model allowlists and output caps per tier, as tierPolicy takes them. */
function tierPolicyOptions(config: GatewayConfig): TierPolicyOptions {
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
  return { ...(tiers ? { tiers } : {}), ...(defaultTier ? { defaultTier } : {}) };
}

/** `"shadow": true` on tiers, tenants or `global`. */
function shadowPlan(config: GatewayConfig): ShadowPlan {
  const named = (entries: Record<string, { shadow?: boolean }> | undefined) =>
    Object.entries(entries ?? {}).flatMap(([name, entry]) => (entry.shadow ? [name] : []));
  return { all: config.global?.shadow === true, tiers: named(config.tiers), tenants: named(config.tenants) };
}

/** The chain's limits from the config's tiers and `global`. */
export function limitOptions(config: GatewayConfig): LimitOptions {
  const concurrent = perTier(config, (tier) => tier.maxConcurrent);
  const defaultTier = defaultTierOf(config);
  return {
    requestLayers: layers(config, 'requests', config.global?.requestsPerMinute),
    tokenLayers: layers(config, 'tokens', config.global?.tokensPerMinute),
    toolCallLayers: toolCallLayers(config),
    ...(concurrent
      ? {
          concurrency: {
            tiers: concurrent,
            limit: Math.min(...Object.values(concurrent)),
            ...(defaultTier ? { defaultTier } : {}),
          },
        }
      : {}),
    tierPolicy: tierPolicyOptions(config),
    shadow: shadowPlan(config),
  };
}
