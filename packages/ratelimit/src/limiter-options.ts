// The options every limiter shares, resolved once at factory time into a frozen configuration.
import { renderApiError, type ErrorRenderer } from '@tollgate/core';
import { assertKnownOptions } from '@tollgate/core/options';
import { LAYER_OPTION_NAMES, resolveLayers, type LimitLayer, type LimitLayerOptions } from './limit-layers.js';
import { storeFailureHandling, type StoreFailureHandling } from './store-failure.js';
import type { CommonLimitOptions, WaitOptions } from './types.js';
import { resolveWaitOptions, WaitQueue } from './wait-queue.js';

/** Every limiter's error codes start with it (`ERR_TG_RATELIMIT_UNKNOWN_OPTION`, `..._INVALID_WAIT`). */
export const LIMITER_CODE = 'ERR_TG_RATELIMIT';

/** The option names every limiter takes after its own (its layer options, `stores`, and any of its own). */
export const LIMITER_OPTION_NAMES = [
  'prefix',
  'wait',
  'onStoreFailure',
  'timeoutMs',
  'onStoreError',
  'renderError',
] as const;

/** The option names of a limiter counted in layers (tieredRateLimit, tokenRateLimit). */
const LAYERED_OPTION_NAMES = [...LAYER_OPTION_NAMES, 'layers', 'stores', ...LIMITER_OPTION_NAMES] as const;

/** What resolving reads from a limiter's options (the factory's own names are checked first). */
interface LimiterOptions extends CommonLimitOptions, LimitLayerOptions {
  layers?: LimitLayerOptions[];
  stores?: object;
  prefix?: string;
  wait?: WaitOptions;
}

/** How one limiter differs from the others. */
interface LimiterDefaults<O extends LimiterOptions> {
  /** The factory's name, in messages: `tieredRateLimit`. */
  factory: string;
  /**
   * Every option name the limiter takes.
   * @default LAYERED_OPTION_NAMES
   */
  optionNames?: readonly string[];
  /** The limit of callers without a tier limit. */
  defaultLimit: number;
  /** The prefix of the counter keys when the options give none. */
  defaultPrefix: string;
  /**
   * When set, stores with a `prefix` of their own put it in front of the limiter's prefix,
   * which then defaults to this instead of `defaultPrefix`.
   */
  prefixUnderStores?: string;
  /**
   * The store of `stores` the limiter counts in, when it is core's in-memory one, unaltered. Without
   * stores, or with that one, the limiter counts in this process's memory: its calls need no deadline.
   * @default none: the calls always have a deadline
   */
  memoryStoreOf?: (stores: NonNullable<O['stores']>) => object | undefined;
  /** See `WaitQueueOptions.exactRetryAfter`. */
  exactRetryAfter: boolean;
}

/** A limiter's options with every default filled in and every value checked. */
export interface ResolvedLimiterOptions {
  readonly failures: StoreFailureHandling;
  readonly renderError: ErrorRenderer;
  /** Put in front of each layer's name in the counter keys. */
  readonly prefix: string;
  readonly layers: readonly LimitLayer[];
  /** Present when the limiter waits for room instead of refusing. */
  readonly queue: WaitQueue | undefined;
}

function prefixOf<O extends LimiterOptions>(options: O, defaults: LimiterDefaults<O>): string {
  // Every key the stores write lives under their prefix; the limiter's counters too.
  const storesPrefix = (options.stores as { prefix?: unknown } | undefined)?.prefix;
  if (defaults.prefixUnderStores === undefined || typeof storesPrefix !== 'string')
    return options.prefix ?? defaults.defaultPrefix;
  return storesPrefix + (options.prefix ?? defaults.prefixUnderStores);
}

/** Checks a limiter's options and fills their defaults; throws the limiter's `ERR_TG_RATELIMIT_*` error on the first wrong one. */
export function resolveLimiterOptions<O extends LimiterOptions>(
  options: O,
  defaults: LimiterDefaults<O>,
): ResolvedLimiterOptions {
  const { factory } = defaults;
  const optionNames = defaults.optionNames ?? LAYERED_OPTION_NAMES;
  assertKnownOptions(options, optionNames, `${LIMITER_CODE}_UNKNOWN_OPTION`, factory);
  const { stores } = options;
  const inProcess = defaults.memoryStoreOf !== undefined && (!stores || defaults.memoryStoreOf(stores) !== undefined);
  const failures = storeFailureHandling(options, factory, LIMITER_CODE, inProcess);
  // The options are the limiter's one layer, or give its `layers` what they leave out.
  const layers = resolveLayers(options, { factory, codePrefix: LIMITER_CODE, defaultLimit: defaults.defaultLimit });
  const waitSettings = resolveWaitOptions(options.wait, factory, LIMITER_CODE);
  return Object.freeze({
    failures,
    renderError: options.renderError ?? renderApiError,
    prefix: prefixOf(options, defaults),
    layers: Object.freeze(layers),
    queue: waitSettings && new WaitQueue(waitSettings, { exactRetryAfter: defaults.exactRetryAfter }),
  });
}
