// The routing part of the proxy config (modelGroups, requestClasses, retry, circuitBreaker, healthChecks), checked at start.
import { createPricing, TollgateError } from '@tollgate/core';
import { didYouMean } from '@tollgate/core/options';
import type { ModelPrice } from '@tollgate/core';
import type { UpstreamSettings } from '@tollgate/providers/routes';
import { resolveRouterOptions } from '../index.js';
import type { CircuitBreakerOptions, ModelGroupOptions, RequestClassOptions, RetryOptions } from '../index.js';
import { resolveHealthChecks } from './health-check-options.js';
import type { HealthChecksConfig, HealthProbeConfig } from './health-check-options.js';

export interface RoutingConfig {
  /** Model names a client may ask for, each served by one or more targets (`upstream` + `model`). */
  modelGroups?: Record<string, ModelGroupOptions>;
  /** Model aliases (e.g. `auto`) whose rules pick a group by what the request is. */
  requestClasses?: Record<string, RequestClassOptions>;
  retry?: RetryOptions;
  circuitBreaker?: CircuitBreakerOptions;
  healthChecks?: HealthChecksConfig;
  /** @deprecated the older name of `healthChecks` (see `HealthProbeConfig`). */
  healthProbe?: HealthProbeConfig;
}

interface RoutedGateway extends RoutingConfig {
  upstreams?: Record<string, unknown>;
  models?: Record<string, ModelPrice>;
}

/** One upstream as the gateway reaches it: the config's `upstreams` entry, its kind resolved (the config folder). */
export interface UpstreamOptions extends UpstreamSettings {
  /** The wire format it speaks: an adapter's upstream kind. */
  api: string;
  baseUrl: string;
  apiKeyEnv?: string | undefined;
  apiKey?: string | undefined;
  /** @default 10000 */
  connectTimeoutMs?: number | undefined;
  /** @default 120000 */
  firstByteTimeoutMs?: number | undefined;
  /** @default 120000 */
  idleTimeoutMs?: number | undefined;
  /**
   * A JSON call goes to this upstream as a stream, held to its grant (docs/architecture.md, "What a JSON answer can
   * spend"); false: as JSON, billed its real cost past its cap (an upstream that cannot stream). @default true
   */
  jsonAsStream?: boolean | undefined;
  /**
   * An answer billed without its usage (cut by the gateway, or its usage never came) whose model's tokenizer is not
   * published (Claude) is billed this upstream's own count of the text its client received (its API's token count,
   * e.g. Anthropic's `count_tokens`), asked before the call settles; false, or where the API cannot count, the upper
   * count, flagged `outputUpperBound` (docs/tokenizers.md). @default true
   */
  countCutAnswers?: boolean | undefined;
  /** How long that count may take: past it, or failed, the answer is billed its upper count. @default 5000 */
  countTimeoutMs?: number | undefined;
}

/** Where calls go: the upstreams, the models' prices and providers, and the routes across them. */
export interface RoutingOptions extends RoutingConfig {
  /** None: every call goes to the in-process mock. */
  upstreams?: Record<string, UpstreamOptions> | undefined;
  models?: Record<string, ModelPrice & { provider: string }> | undefined;
}

/** What is wrong with the routing config, naming the field; undefined when it is sound. */
export function checkRouting(config: RoutedGateway): string | undefined {
  const { modelGroups, requestClasses, retry, circuitBreaker, healthProbe, healthChecks } = config;
  if (modelGroups === undefined && requestClasses === undefined && healthProbe === undefined) {
    // retry and circuitBreaker alone are checked too: a typo there should not wait for the first group.
    if (retry === undefined && circuitBreaker === undefined && healthChecks === undefined) return undefined;
  }
  let resolved;
  try {
    resolved = resolveRouterOptions({ modelGroups, requestClasses, retry, circuitBreaker });
    resolveHealthChecks(config);
  } catch (error) {
    if (error instanceof TollgateError) return error.message.replace(/ \(ERR_TG_[^)]*\)$/, '');
    throw error;
  }
  if (resolved.groups.size > 0 && !config.upstreams)
    return 'modelGroups needs upstreams: the built-in mock serves each model itself';
  const pricing = createPricing({ models: { ...config.models } });
  for (const group of resolved.groups.values()) {
    for (const [i, target] of group.targets.entries()) {
      const at = `modelGroups.${group.name}.targets[${i}]`;
      if (config.upstreams && !Object.hasOwn(config.upstreams, target.upstream))
        return `${at}.upstream names "${target.upstream}", which is not a key of upstreams`;
      if (!pricing.find(target.model))
        return `${at}.model "${target.model}" has no price: add it to models (every target is billed as itself)${didYouMean(target.model, pricing.models())}`;
    }
  }
  const pages = healthChecks?.statusPages;
  if (typeof pages === 'object' && pages !== null)
    for (const name of Object.keys(pages))
      if (!config.upstreams || !Object.hasOwn(config.upstreams, name))
        return `healthChecks.statusPages.${name} is not a key of upstreams`;
  return undefined;
}
