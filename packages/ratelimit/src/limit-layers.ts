// Layers of one limiter (global, tenant, key ...): each with its own counter id, window and per-tier limit.
import type { Request } from 'express';
import { parseDuration, TollgateError } from '@tollgate/core';
import { didYouMean } from '@tollgate/core/options';
import { limitKeyResolver, tierOf, type LimitKeyResolver } from './limit-key.js';
import type { LimitBy } from './types.js';

/** A tier's limit: the number itself, or `{ limit }` (so a config entry can carry more fields). */
export type TierLimit = number | { limit: number };

/** One counted limit. In a limiter's `layers`, fields left out are taken from the limiter's options. */
export interface LimitLayerOptions {
  /**
   * Names the layer in error messages and store keys; must be unique in one limiter.
   * @default the `by` value (`'key'`, `'tenant'`, ...), or `'custom'` for a function
   */
  name?: string;
  /**
   * What the layer counts by.
   * @default 'key'
   */
  by?: LimitBy;
  /**
   * The limit per window for callers whose tier is not in `tiers` (for everyone without `tiers`).
   * @default 60 (requests) or 10000 (tokens)
   */
  limit?: number;
  /** Limit per tier, by the caller's `identity.tier`, e.g. `{ free: 5, pro: { limit: 100 } }`. */
  tiers?: Record<string, TierLimit>;
  /**
   * The tier used for callers without a tier, or with a tier missing from `tiers`.
   * @default 'free'
   */
  defaultTier?: string;
  /**
   * Window length, in ms or as `"1m"`, `"10s"`.
   * @default '1m'
   */
  window?: number | string;
  /**
   * A factor (0-1) the limit of this request is multiplied by, asked per request: how a guard's
   * throttle (`guard.limitScale`) slows a caller down. The limit never drops below 1.
   * @default none (the limit as configured)
   */
  limitScale?: (req: Request) => number;
}

export const LAYER_OPTION_NAMES = ['name', 'by', 'limit', 'tiers', 'defaultTier', 'window', 'limitScale'] as const;

export interface LimitLayer {
  readonly name: string;
  readonly windowMs: number;
  /** The counter id for this request, without the store prefix. */
  readonly keyOf: LimitKeyResolver;
  /** The limit that applies to this request (by its tier). */
  readonly limitOf: (req: Request) => number;
  /** Counted by a function of the app's (`by`), which readLimits has no request to call with. */
  readonly custom: boolean;
}

interface LayerDefaults {
  factory: string;
  /** `ERR_TG_RATELIMIT` */
  codePrefix: string;
  defaultLimit: number;
}

function positiveInteger(value: unknown, what: string, code: string): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0) return value;
  throw new TollgateError(code, `${what} must be a positive integer; got ${JSON.stringify(value)}`);
}

function byName(by: LimitBy): string {
  return typeof by === 'function' ? 'custom' : by;
}

/** The configured limit times the request's factor, clamped to 0-1 (a bad factor is ignored), and at least 1. */
function scaledLimit(limitOf: (req: Request) => number, scale: (req: Request) => number): (req: Request) => number {
  return function scaledLimitOf(req) {
    const limit = limitOf(req);
    const factor = scale(req);
    if (!(factor < 1)) return limit;
    return Math.max(1, Math.floor(limit * Math.max(0, factor)));
  };
}

function resolveLayer(
  own: LimitLayerOptions,
  shared: LimitLayerOptions,
  defaults: LayerDefaults,
  where: string,
): LimitLayer {
  const invalidLimit = `${defaults.codePrefix}_INVALID_LIMIT`;
  // Limits travel as a group: a layer that sets its own limit or tiers inherits neither.
  const limits = own.limit !== undefined || own.tiers !== undefined ? own : shared;
  const by = own.by ?? shared.by ?? 'key';
  const name = own.name ?? byName(by);
  if (!/^[\w.-]{1,64}$/.test(name)) {
    throw new TollgateError(
      `${defaults.codePrefix}_INVALID_NAME`,
      `${where}name must be 1-64 letters, digits, "_", "." or "-"; got ${JSON.stringify(name)}`,
    );
  }
  const fallbackLimit =
    limits.limit === undefined ? defaults.defaultLimit : positiveInteger(limits.limit, `${where}limit`, invalidLimit);
  const tierLimits = new Map<string, number>();
  if (limits.tiers !== undefined) {
    if (typeof limits.tiers !== 'object' || limits.tiers === null) {
      throw new TollgateError(invalidLimit, `${where}tiers must be an object of tier name to limit`);
    }
    for (const [tier, value] of Object.entries(limits.tiers)) {
      const limit = typeof value === 'object' && value !== null ? value.limit : value;
      tierLimits.set(tier, positiveInteger(limit, `${where}tiers.${tier} limit`, invalidLimit));
    }
  }
  const defaultTierLimit = tierLimits.get(limits.defaultTier ?? 'free') ?? fallbackLimit;
  const window = own.window ?? shared.window ?? '1m';
  let windowMs: number;
  try {
    windowMs = parseDuration(window, `${where}window`);
  } catch (error) {
    throw new TollgateError(
      `${defaults.codePrefix}_INVALID_WINDOW`,
      (error as Error).message.replace(/ \(ERR_.*$/, ''),
      { cause: error },
    );
  }

  const configuredLimitOf =
    tierLimits.size === 0
      ? () => fallbackLimit
      : (req: Request) => {
          const tier = tierOf(req);
          return (tier !== undefined ? tierLimits.get(tier) : undefined) ?? defaultTierLimit;
        };
  const scale = own.limitScale ?? shared.limitScale;
  if (scale !== undefined && typeof scale !== 'function') {
    throw new TollgateError(invalidLimit, `${where}limitScale must be a function (req) => number`);
  }
  const limitOf = scale === undefined ? configuredLimitOf : scaledLimit(configuredLimitOf, scale);
  const keyOf = limitKeyResolver(by, `${defaults.codePrefix}_INVALID_BY`);
  return { name, windowMs, keyOf, limitOf, custom: typeof by === 'function' };
}

/** Resolves a limiter's options into its layers: `layers` if given, else the options themselves as one layer. */
export function resolveLayers(
  options: LimitLayerOptions & { layers?: LimitLayerOptions[] },
  defaults: LayerDefaults,
): LimitLayer[] {
  const unknownOption = `${defaults.codePrefix}_UNKNOWN_OPTION`;
  if (options.layers === undefined) return [resolveLayer(options, {}, defaults, '')];
  if (!Array.isArray(options.layers) || options.layers.length === 0) {
    throw new TollgateError(
      `${defaults.codePrefix}_INVALID_LAYERS`,
      `${defaults.factory}() layers must be a non-empty array`,
    );
  }
  const layers = options.layers.map((layer, index) => {
    for (const key of Object.keys(layer ?? {})) {
      if ((LAYER_OPTION_NAMES as readonly string[]).includes(key)) continue;
      throw new TollgateError(
        unknownOption,
        `${defaults.factory}() layers[${index}] has no option "${key}"${didYouMean(key, LAYER_OPTION_NAMES)}. Known: ${LAYER_OPTION_NAMES.join(', ')}`,
      );
    }
    return resolveLayer(layer, options, defaults, `layers[${index}].`);
  });
  const seen = new Set<string>();
  for (const layer of layers) {
    if (seen.has(layer.name)) {
      throw new TollgateError(
        `${defaults.codePrefix}_DUPLICATE_LAYER`,
        `${defaults.factory}() has two layers named "${layer.name}"; give each a unique name`,
      );
    }
    seen.add(layer.name);
  }
  return layers;
}
